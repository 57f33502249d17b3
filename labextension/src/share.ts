/**
 * Sharing from JupyterLab: export / import bundles, push / pull through a registry, binder export and
 * reproduce, as commands (palette, file browser context menu, the sidebar's "Share…" menu per
 * environment). Each starts a background operation on the server (`POST …` → 202) and follows it
 * (`GET operations/ID`) with a notification; reproduce then opens its HTML report in a sandboxed
 * iframe tab.
 */
import { JupyterFrontEnd } from '@jupyterlab/application';
import {
  ICommandPalette,
  InputDialog,
  MainAreaWidget,
  Notification
} from '@jupyterlab/apputils';
import { URLExt } from '@jupyterlab/coreutils';
import { IFileBrowserFactory } from '@jupyterlab/filebrowser';
import { INotebookTracker } from '@jupyterlab/notebook';
import { ServerConnection } from '@jupyterlab/services';
import { IFrame } from '@jupyterlab/ui-components';
import { ReadonlyPartialJSONObject } from '@lumino/coreutils';
import { Menu } from '@lumino/widgets';

import { containersIcon } from './icons';

export namespace ShareCommandIDs {
  export const exportBundle = 'jupyter-containers:export';
  export const importBundle = 'jupyter-containers:import-bundle';
  export const push = 'jupyter-containers:push';
  export const pull = 'jupyter-containers:pull';
  export const binder = 'jupyter-containers:binder-export';
  export const reproduce = 'jupyter-containers:reproduce';
}

/** The fields of operations' results that the commands show (docs/server.md has them all). */
export interface IOperationResult {
  path?: string;
  environment?: string;
  spec_file?: string;
  reference?: string;
  folder?: string;
  files?: string[];
  status?: string;
  report?: string;
  [key: string]: unknown;
}

/** A background operation of the server (server/share_ops.py). */
export interface IOperation {
  id: string;
  kind: string;
  subject: string;
  status: 'running' | 'completed' | 'failed';
  result: IOperationResult | null;
  error: { message: string; status: number; type: string } | null;
  log: string[];
}

/** Report tabs opened so far (their ids). */
let reports = 0;

let openMenu: ((environment: string, x: number, y: number) => void) | null =
  null;

/**
 * The sidebar's hook: open the "Share…" menu of `environment` at the mouse (a no-op before
 * activation).
 */
export function openShareMenu(environment: string, event: MouseEvent): void {
  openMenu?.(environment, event.clientX, event.clientY);
}

/**
 * Register the sharing commands and menus.
 */
export function activateSharing(
  app: JupyterFrontEnd,
  palette: ICommandPalette | null,
  browsers: IFileBrowserFactory | null,
  notebooks: INotebookTracker | null
): void {
  const { commands, shell } = app;
  const settings = app.serviceManager.serverSettings;
  const contents = app.serviceManager.contents;

  const request = async (
    path: string,
    init: RequestInit = {}
  ): Promise<IOperation> => {
    const url = URLExt.join(settings.baseUrl, 'jupyter-containers/api', path);
    const response = await ServerConnection.makeRequest(url, init, settings);
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      throw new Error(data.message || response.statusText);
    }
    return data as IOperation;
  };

  /** Start an operation, follow it, and say how it ended; the finished operation (or null). */
  const follow = async (
    what: string,
    path: string,
    body: ReadonlyPartialJSONObject
  ): Promise<IOperation | null> => {
    let op: IOperation;
    try {
      op = await request(path, { method: 'POST', body: JSON.stringify(body) });
    } catch (error) {
      Notification.error(`${what}: ${(error as Error).message}`);
      return null;
    }
    const id = Notification.emit(`${what}…`, 'in-progress', {
      autoClose: false
    });
    while (op.status === 'running') {
      await new Promise(resolve => setTimeout(resolve, 1000));
      try {
        op = await request(`operations/${op.id}`);
      } catch (error) {
        Notification.update({
          id,
          message: `${what}: ${(error as Error).message}`,
          type: 'error'
        });
        return null;
      }
    }
    if (op.status === 'failed') {
      Notification.update({
        id,
        message: `${what} failed: ${op.error?.message ?? 'unknown error'}`,
        type: 'error',
        autoClose: false
      });
    } else {
      Notification.update({
        id,
        message: `${what}: ${Private.summary(op)}`,
        type: 'success',
        autoClose: 8000
      });
    }
    return op;
  };

  const ask = async (
    title: string,
    label: string,
    text: string
  ): Promise<string | null> => {
    const answer = await InputDialog.getText({ title, label, text });
    return answer.button.accept ? (answer.value ?? '').trim() : null;
  };

  const environmentOf = async (
    args: ReadonlyPartialJSONObject
  ): Promise<string | null> =>
    typeof args.environment === 'string'
      ? args.environment
      : ask('Environment', 'Name of the environment', '');

  const selectedPath = (suffixes: string[]): string | null => {
    const browser = browsers?.tracker.currentWidget;
    for (const item of browser?.selectedItems() ?? []) {
      if (suffixes.some(suffix => item.path.endsWith(suffix))) {
        return contents.localPath(item.path);
      }
    }
    return null;
  };

  commands.addCommand(ShareCommandIDs.exportBundle, {
    label: 'Export environment as a bundle…',
    caption:
      'Write spec, lock and referenced files (and optionally the image) into a .tar.gz',
    execute: async args => {
      const env = await environmentOf(args);
      if (!env) {
        return;
      }
      const path = await ask(
        `Export ${env}`,
        'Bundle to write (relative to the server root; end it with .image.tar.gz to include the image)',
        `${env}.tar.gz`
      );
      if (!path) {
        return;
      }
      await follow(`Export of ${env}`, `environments/${env}/export`, {
        path,
        with_image: path.endsWith('.image.tar.gz')
      });
    }
  });

  commands.addCommand(ShareCommandIDs.importBundle, {
    label: 'Import environment bundle',
    caption: 'Check a bundle and add its environment to the workspace',
    execute: async args => {
      const path =
        typeof args.path === 'string'
          ? contents.localPath(args.path)
          : (selectedPath(['.tar.gz', '.tgz']) ??
            (await ask(
              'Import bundle',
              'Bundle (relative to the server root)',
              ''
            )));
      if (!path) {
        return;
      }
      await follow(`Import of ${path}`, 'bundles/import', { path });
    }
  });

  for (const [id, verb] of [
    [ShareCommandIDs.push, 'push'],
    [ShareCommandIDs.pull, 'pull']
  ]) {
    commands.addCommand(id, {
      label:
        verb === 'push'
          ? 'Push image to registry…'
          : 'Pull image from registry…',
      caption:
        verb === 'push'
          ? "Push the environment's image (and base) to the team registry"
          : "Pull the environment's image from the team registry instead of building it",
      execute: async args => {
        const env = await environmentOf(args);
        if (!env) {
          return;
        }
        const registry = await ask(
          `${verb === 'push' ? 'Push' : 'Pull'} ${env}`,
          'Registry HOST/REPO (empty: registry = of containers.toml or the target)',
          ''
        );
        if (registry === null) {
          return;
        }
        await follow(
          `${verb === 'push' ? 'Push' : 'Pull'} of ${env}`,
          `environments/${env}/${verb}`,
          registry ? { registry } : {}
        );
      }
    });
  }

  commands.addCommand(ShareCommandIDs.binder, {
    label: 'Export binder/ folder…',
    caption: 'Write repo2docker / mybinder files pinned from the lock',
    execute: async args => {
      const env = await environmentOf(args);
      if (!env) {
        return;
      }
      const path = await ask(
        `Binder export of ${env}`,
        'Folder to write',
        'binder'
      );
      if (!path) {
        return;
      }
      await follow(`Binder export of ${env}`, `environments/${env}/binder`, {
        path
      });
    }
  });

  commands.addCommand(ShareCommandIDs.reproduce, {
    label: 'Reproduce notebook',
    caption:
      "Rebuild the notebook's recorded environment, run it again and compare every output",
    icon: containersIcon,
    execute: async args => {
      const path =
        typeof args.path === 'string'
          ? contents.localPath(args.path)
          : (selectedPath(['.ipynb']) ??
            (notebooks?.currentWidget
              ? contents.localPath(notebooks.currentWidget.context.path)
              : null));
      if (!path) {
        return;
      }
      const op = await follow(`Reproduce ${path}`, 'notebooks/reproduce', {
        path
      });
      if (op?.status === 'completed' && op.result?.report) {
        await showReport(String(op.result.report), String(op.result.status));
      }
    }
  });

  /** The HTML report in a tab: a sandboxed iframe (no scripts, no same origin) showing the file's text. */
  const showReport = async (report: string, status: string): Promise<void> => {
    const frame = new IFrame({ sandbox: [] });
    try {
      const file = await contents.get(report, {
        content: true,
        format: 'text'
      });
      const inner = frame.node.querySelector('iframe');
      if (inner) {
        inner.srcdoc = String(file.content);
      }
    } catch (error) {
      Notification.error(`Cannot open ${report}: ${(error as Error).message}`);
      return;
    }
    const widget = new MainAreaWidget({ content: frame });
    widget.id = `jupyter-containers-report-${reports++}`;
    widget.addClass('jp-Containers-reportView');
    widget.node.dataset.status = status;
    widget.node.dataset.report = report;
    widget.title.label = `Reproduce: ${status}`;
    widget.title.icon = containersIcon;
    widget.title.closable = true;
    shell.add(widget, 'main');
    shell.activateById(widget.id);
  };

  const menu = new Menu({ commands });
  menu.addClass('jp-Containers-shareMenu');
  menu.title.label = 'Share';
  openMenu = (environment, x, y) => {
    menu.clearItems();
    for (const command of [
      ShareCommandIDs.exportBundle,
      ShareCommandIDs.push,
      ShareCommandIDs.pull,
      ShareCommandIDs.binder
    ]) {
      menu.addItem({ command, args: { environment } });
    }
    menu.open(x, y);
  };

  app.contextMenu.addItem({
    command: ShareCommandIDs.reproduce,
    selector: '.jp-DirListing-item[data-file-type="notebook"]',
    rank: 4
  });
  // One selector an item: Lumino's context menu refuses selectors with commas.
  for (const ending of ['.tar.gz', '.tgz']) {
    app.contextMenu.addItem({
      command: ShareCommandIDs.importBundle,
      selector: `.jp-DirListing-item[title*="${ending}"]`,
      rank: 4
    });
  }
  for (const command of [
    ShareCommandIDs.reproduce,
    ShareCommandIDs.importBundle,
    ShareCommandIDs.exportBundle,
    ShareCommandIDs.push,
    ShareCommandIDs.pull,
    ShareCommandIDs.binder
  ]) {
    palette?.addItem({ command, category: 'Containers' });
  }
}

namespace Private {
  export const counter = 0;

  /** One line about a finished operation's result. */
  export function summary(op: IOperation): string {
    const r = op.result ?? {};
    switch (op.kind) {
      case 'export':
        return `wrote ${r.path}`;
      case 'import':
        return `added ${r.environment} to ${r.spec_file}`;
      case 'push':
        return `pushed ${r.reference}`;
      case 'pull':
        return `pulled ${r.reference}`;
      case 'binder':
        return `wrote ${(r.files ?? []).join(', ')} to ${r.folder}`;
      case 'reproduce':
        return `${r.status} (report: ${r.report})`;
      default:
        return 'done';
    }
  }
}
