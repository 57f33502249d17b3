/**
 * jupyter-containers for JupyterLab: a "Containers" sidebar and "Run in container…" for
 * notebooks (notebook toolbar, file browser context menu, command palette).
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  ICommandPalette,
  Notification,
  showErrorMessage
} from '@jupyterlab/apputils';
import { IDocumentManager } from '@jupyterlab/docmanager';
import { DocumentRegistry } from '@jupyterlab/docregistry';
import { IFileBrowserFactory } from '@jupyterlab/filebrowser';
import {
  INotebookModel,
  INotebookTracker,
  NotebookPanel
} from '@jupyterlab/notebook';
import { ToolbarButton } from '@jupyterlab/ui-components';
import { CommandRegistry } from '@lumino/commands';
import { ReadonlyPartialJSONObject } from '@lumino/coreutils';
import { IDisposable } from '@lumino/disposable';

import { ContainersAPI, IEnvironment, IJob } from './api';
import { askForJobWithValues, RunDialogBody } from './dialog';
import { containersIcon } from './icons';
import { ContainersModel } from './model';
import { NotebookEnvironmentsExtension } from './notebookenv';
import { recordEnvironments } from './metadata';
import { activateSharing } from './share';
import { ContainersPanel } from './panel';

export * from './api';
export * from './model';
export { ContainersPanel } from './panel';

namespace CommandIDs {
  export const runInContainer = 'jupyter-containers:run-in-container';
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-containers:plugin',
  description:
    'A Containers sidebar (environments, builds, containers, jobs) and "Run in container…" for notebooks.',
  autoStart: true,
  optional: [
    ILayoutRestorer,
    ICommandPalette,
    INotebookTracker,
    IFileBrowserFactory,
    IDocumentManager
  ],
  activate: (
    app: JupyterFrontEnd,
    restorer: ILayoutRestorer | null,
    palette: ICommandPalette | null,
    notebooks: INotebookTracker | null,
    browsers: IFileBrowserFactory | null,
    docManager: IDocumentManager | null
  ): void => {
    const { commands, shell } = app;
    const contents = app.serviceManager.contents;
    const model = new ContainersModel({
      api: new ContainersAPI({
        serverSettings: app.serviceManager.serverSettings
      })
    });
    let lastEnvironment: string | undefined;

    /**
     * Open a job's output notebook to read it: no kernel is started (the job's kernel was a container;
     * a notebook opened only to read must not start another), with actions to start one or run it again.
     */
    const openOutput = (path: string, job?: IJob): void => {
      const widget = docManager
        ? docManager.openOrReveal(
            path,
            'default',
            undefined,
            {},
            {
              shouldStart: false
            }
          )
        : undefined;
      if (!widget) {
        void commands.execute('docmanager:open', { path });
        return;
      }
      const session = widget.context.sessionContext;
      if (session.session?.kernel) {
        return; // already open with a kernel
      }
      const actions: Notification.IAction[] = [
        {
          label: 'Start a kernel',
          caption: "Start the notebook's kernel to run its cells here",
          callback: () => {
            session.kernelPreference = {
              ...session.kernelPreference,
              shouldStart: true
            };
            void session.startKernel();
          }
        }
      ];
      if (job) {
        actions.push({
          label: 'Run again as a job…',
          caption: `Run ${job.notebook} in ${job.environment} again`,
          callback: () =>
            void commands.execute(CommandIDs.runInContainer, {
              path: job.notebook
            })
        });
      }
      Notification.info(
        `${path} is open to read, without a kernel. Start one to run its cells here, or run the notebook again as a job.`,
        { autoClose: false, actions }
      );
    };

    const panel = new ContainersPanel({
      model,
      openPath: path => {
        const job = (model.jobs.data ?? []).find(j => j.output_path === path);
        openOutput(path, job);
      },
      openFile: path =>
        void commands.execute('docmanager:open', { path, factory: 'Editor' }),
      runNotebook: () =>
        void commands.execute(CommandIDs.runInContainer, { origin: 'panel' }),
      notebookOf: kernelId => {
        for (const session of app.serviceManager.sessions.running()) {
          if (session.kernel?.id === kernelId) {
            return session.path;
          }
        }
        return null;
      }
    });
    shell.add(panel, 'left', { rank: 600 });
    if (notebooks) {
      // The environments each notebook uses go into its metadata (see metadata.ts).
      recordEnvironments(notebooks, app.serviceManager.serverSettings);
    }
    // Export, import, push, pull, binder export and reproduce (see share.ts).
    try {
      activateSharing(app, palette, browsers, notebooks);
    } catch (error) {
      // One part failing must not take the run dialog, toolbar items and commands below down with it.
      console.error(
        'jupyter-containers: the sharing commands failed to start',
        error
      );
    }
    restorer?.add(panel, ContainersPanel.ID);

    /** The notebook a command is about: its argument, the file browser's selection, or the current one. */
    const notebookPath = (args: ReadonlyPartialJSONObject): string => {
      if (typeof args.path === 'string') {
        return contents.localPath(args.path);
      }
      if (args.origin === 'filebrowser' && browsers?.tracker.currentWidget) {
        for (const item of browsers.tracker.currentWidget.selectedItems()) {
          if (item.path.endsWith('.ipynb')) {
            return contents.localPath(item.path);
          }
        }
      }
      const current = notebooks?.currentWidget;
      return current ? contents.localPath(current.context.path) : '';
    };

    commands.addCommand(CommandIDs.runInContainer, {
      label: 'Run in container…',
      caption:
        'Run the whole notebook in a container environment, with its own resources and parameters',
      icon: containersIcon,
      execute: async args => {
        // Fresh statuses for the dialog (the sidebar's polls may be standing by).
        const environments: IEnvironment[] = await model
          .refreshEnvironments()
          .catch(() => model.environments.data ?? []);
        if (!environments.length) {
          await showErrorMessage(
            'No environment to run in',
            model.environments.error ??
              'The workspace has no environments: add one to containers.toml at the server root.'
          );
          return;
        }
        // Asked again, as filled in, with the server's reason, until it is accepted or cancelled.
        // The sidebar's list when it has one (asking every target can take seconds), else asked now.
        const targets =
          model.targets.data ?? (await model.refreshTargets().catch(() => []));
        let form: RunDialogBody.IOptions = {
          environments,
          targets,
          target: model.target ?? '',
          notebook: notebookPath(args),
          environment: lastEnvironment
        };
        for (;;) {
          const asked = await askForJobWithValues(form);
          if (!asked) {
            return;
          }
          const { request, values } = asked;
          lastEnvironment = request.environment;
          try {
            const job = await model.submitJob(request);
            shell.activateById(panel.id);
            Notification.success(
              `Job ${job.id}: ${job.notebook} submitted to ${job.environment}; the sidebar follows it.`,
              { autoClose: 5000 }
            );
            return;
          } catch (error) {
            form = {
              environments,
              targets,
              target: request.target ?? '',
              notebook: request.notebook,
              environment: request.environment,
              values,
              error: error instanceof Error ? error.message : String(error)
            };
          }
        }
      }
    });

    app.docRegistry.addWidgetExtension(
      'Notebook',
      new RunButtonExtension(commands)
    );
    app.docRegistry.addWidgetExtension(
      'Notebook',
      new NotebookEnvironmentsExtension(model)
    );
    app.contextMenu.addItem({
      command: CommandIDs.runInContainer,
      args: { origin: 'filebrowser' },
      selector: '.jp-DirListing-item[data-file-type="notebook"]',
      rank: 3
    });
    palette?.addItem({
      command: CommandIDs.runInContainer,
      category: 'Containers'
    });
  }
};

/**
 * Adds "Run in container…" to every notebook's toolbar.
 */
class RunButtonExtension implements DocumentRegistry.IWidgetExtension<
  NotebookPanel,
  INotebookModel
> {
  constructor(private _commands: CommandRegistry) {}

  createNew(
    panel: NotebookPanel,
    context: DocumentRegistry.IContext<INotebookModel>
  ): IDisposable {
    const button = new ToolbarButton({
      icon: containersIcon,
      tooltip: 'Run in container…',
      className: 'jp-Containers-runButton',
      onClick: () =>
        void this._commands.execute(CommandIDs.runInContainer, {
          path: context.path
        })
    });
    if (!panel.toolbar.insertAfter('cellType', 'run-in-container', button)) {
      panel.toolbar.insertItem(10, 'run-in-container', button);
    }
    return button;
  }
}

export default plugin;
