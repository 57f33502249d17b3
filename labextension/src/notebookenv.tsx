/**
 * The notebook toolbar's "which environment does this notebook use?" item: the environments a notebook
 * records in its `metadata.jupyter_containers` (checked by `GET notebooks/check` against the workspace's
 * spec: matches / spec changed / missing) and those its `%%container ENV` cells name, each with its
 * state; a click lists them with what can be done: rebuild an environment, or restore the notebook's
 * recorded environment into the workspace's spec.
 *
 * One item for both issues that asked for it (the Lab experience and sharing), next to "Run in container…".
 */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { DocumentRegistry } from '@jupyterlab/docregistry';
import { INotebookModel, NotebookPanel } from '@jupyterlab/notebook';
import { ReactWidget, ToolbarButtonComponent } from '@jupyterlab/ui-components';
import { IDisposable } from '@lumino/disposable';
import { Widget } from '@lumino/widgets';
import * as React from 'react';

import { INotebookEnvironment } from './api';
import { containersIcon } from './icons';
import { ContainersModel } from './model';

/** What the item shows of one environment. */
export interface INotebookEnvState {
  name: string;
  /** `matches`, `spec-changed`, `missing` (recorded ones), or the workspace's build status (cells only). */
  status: string;
  /** Recorded in the notebook's metadata (restorable), or only named by `%%container` cells. */
  recorded: boolean;
  message?: string | null;
}

/** `%%container ENV …` and `%container use ENV` in the notebook's code cells: the environments named. */
export function environmentsOfCells(sources: string[]): string[] {
  const names = new Set<string>();
  const patterns = [
    /^\s*%%container[ \t]+([a-z0-9][a-z0-9._-]*)(?=\s|$)/gm,
    /^\s*%container[ \t]+use[ \t]+([a-z0-9][a-z0-9._-]*)(?=\s|$)/gm
  ];
  for (const source of sources) {
    for (const pattern of patterns) {
      for (const match of source.matchAll(pattern)) {
        names.add(match[1]);
      }
    }
  }
  return [...names];
}

/**
 * Adds the environments item to every notebook's toolbar.
 */
export class NotebookEnvironmentsExtension implements DocumentRegistry.IWidgetExtension<
  NotebookPanel,
  INotebookModel
> {
  constructor(private _model: ContainersModel) {}

  createNew(
    panel: NotebookPanel,
    context: DocumentRegistry.IContext<INotebookModel>
  ): IDisposable {
    const item = new NotebookEnvironmentsItem(this._model, context);
    if (!panel.toolbar.insertAfter('run-in-container', 'environments', item)) {
      panel.toolbar.insertItem(11, 'environments', item);
    }
    return item;
  }
}

/**
 * The toolbar item: a button whose label names the environments and their state.
 */
class NotebookEnvironmentsItem extends ReactWidget {
  constructor(
    private _model: ContainersModel,
    private _context: DocumentRegistry.IContext<INotebookModel>
  ) {
    super();
    this.addClass('jp-Containers-notebookEnvs');
    this.node.dataset.status = 'unknown';
    void _context.ready.then(() => {
      if (this.isDisposed) {
        return;
      }
      this.refresh();
      _context.fileChanged.connect(this.refresh, this);
      _context.model.contentChanged.connect(this._scheduleRefresh, this);
    });
    _model.environmentsChanged.connect(this._scheduleRefresh, this);
  }

  /** The environments and their state, as last computed. */
  get states(): INotebookEnvState[] {
    return this._states;
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    window.clearTimeout(this._timer);
    this._model.environmentsChanged.disconnect(this._scheduleRefresh, this);
    super.dispose();
  }

  /** Ask the server about the recorded environments and read the cells again. */
  refresh(): void {
    void this._refresh();
  }

  private _scheduleRefresh(): void {
    window.clearTimeout(this._timer);
    this._timer = window.setTimeout(() => this.refresh(), 500);
  }

  private async _refresh(): Promise<void> {
    const path = this._context.localPath;
    let recorded: INotebookEnvironment[] = [];
    let error: string | null = null;
    try {
      recorded = await this._model.api.checkNotebook(path);
    } catch (reason) {
      error = reason instanceof Error ? reason.message : String(reason);
    }
    if (this.isDisposed) {
      return;
    }
    const sources: string[] = [];
    const cells = this._context.model.cells;
    for (let i = 0; i < cells.length; i++) {
      const cell = cells.get(i);
      if (cell.type === 'code') {
        sources.push(cell.sharedModel.getSource());
      }
    }
    const workspace = this._model.environments.data ?? [];
    const states: INotebookEnvState[] = recorded.map(env => ({
      name: env.name,
      status: env.status,
      recorded: true,
      message: env.message
    }));
    for (const name of environmentsOfCells(sources)) {
      if (states.some(s => s.name === name)) {
        continue;
      }
      const env = workspace.find(e => e.name === name);
      states.push({
        name,
        status: env ? env.status : 'missing',
        recorded: false,
        message: env
          ? null
          : `The workspace's spec has no environment '${name}', which a %%container cell names.`
      });
    }
    this._states = states;
    this._error = error;
    this._render();
  }

  private _render(): void {
    const states = this._states;
    const worst = states.some(s => s.status === 'missing')
      ? 'missing'
      : states.some(s => s.status === 'spec-changed' || s.status === 'stale')
        ? 'spec-changed'
        : states.length
          ? 'matches'
          : 'none';
    this.node.dataset.status = worst;
    this.node.dataset.environments = states.map(s => s.name).join(' ');
    const label = states.length
      ? states.map(s => `${s.name}${Private.mark(s.status)}`).join(', ')
      : 'No environment';
    const tooltip = states.length
      ? states.map(s => `${s.name}: ${Private.describe(s.status)}`).join('\n')
      : (this._error ??
        'This notebook records no environment and has no %%container cells.');
    this._label = label;
    this._tooltip = tooltip;
    this.update();
  }

  render(): JSX.Element {
    return (
      <ToolbarButtonComponent
        icon={containersIcon}
        label={this._label}
        tooltip={this._tooltip}
        onClick={() => void this._showDetails()}
      />
    );
  }

  private async _showDetails(): Promise<void> {
    await this._refresh();
    const body = new Widget();
    body.addClass('jp-Containers-notebookEnvsDialog');
    if (!this._states.length) {
      body.node.textContent =
        this._error ??
        'This notebook records no environment and has no %%container cells: it runs in its own kernel.';
    }
    for (const state of this._states) {
      const row = document.createElement('div');
      row.className = 'jp-Containers-notebookEnv';
      row.dataset.environment = state.name;
      row.dataset.status = state.status;
      const title = document.createElement('div');
      const strong = document.createElement('strong');
      strong.textContent = state.name;
      title.appendChild(strong);
      title.appendChild(
        document.createTextNode(` — ${Private.describe(state.status)}`)
      );
      row.appendChild(title);
      if (state.message) {
        const message = document.createElement('div');
        message.className = 'jp-Containers-hint';
        message.textContent = state.message;
        row.appendChild(message);
      }
      const actions = document.createElement('div');
      actions.className = 'jp-Containers-actions';
      if (
        state.recorded &&
        (state.status === 'missing' || state.status === 'spec-changed')
      ) {
        actions.appendChild(
          Private.button(
            'Restore from the notebook',
            'jp-Containers-restore',
            () => this._restore(state)
          )
        );
      }
      if (state.status !== 'missing') {
        actions.appendChild(
          Private.button('Rebuild', 'jp-Containers-rebuild', () =>
            this._model.build(state.name)
          )
        );
      }
      row.appendChild(actions);
      body.node.appendChild(row);
    }
    await showDialog({
      title: `Environments of ${this._context.localPath}`,
      body,
      buttons: [Dialog.okButton({ label: 'Close' })]
    });
  }

  /**
   * Write the notebook's recorded environment (spec and lock) into the workspace's spec; building it is
   * the next click (Rebuild here, or Build in the sidebar), so that a restore never starts a long build
   * by surprise.
   */
  private async _restore(state: INotebookEnvState): Promise<void> {
    await this._model.api.restoreNotebook(
      this._context.localPath,
      state.name,
      state.status === 'spec-changed'
    );
    await this._model.refreshEnvironments().catch(() => undefined);
    await this._refresh();
  }

  private _states: INotebookEnvState[] = [];
  private _error: string | null = null;
  private _timer = 0;
  private _label = 'Environments…';
  private _tooltip = 'The container environments this notebook uses';
}

namespace Private {
  export function mark(status: string): string {
    switch (status) {
      case 'matches':
      case 'built':
        return ' ✓';
      case 'missing':
        return ' (missing)';
      case 'spec-changed':
        return ' (spec changed)';
      default:
        return ` (${status})`;
    }
  }

  export function describe(status: string): string {
    switch (status) {
      case 'matches':
        return 'the workspace has the environment the notebook recorded';
      case 'spec-changed':
        return "the workspace's spec (or lock) differs from the one the notebook recorded";
      case 'missing':
        return 'the workspace has no such environment';
      default:
        return `used by %%container cells; ${status}`;
    }
  }

  export function button(
    label: string,
    className: string,
    action: () => Promise<unknown>
  ): HTMLButtonElement {
    const button = document.createElement('button');
    button.className = `jp-Button jp-mod-styled jp-mod-small jp-Containers-button ${className}`;
    button.textContent = label;
    button.addEventListener('click', () => {
      button.disabled = true;
      const status = document.createElement('span');
      status.className = 'jp-Containers-hint';
      button.after(status);
      action().then(
        () => (status.textContent = ' done'),
        error => {
          status.textContent = ` ${error instanceof Error ? error.message : String(error)}`;
          status.classList.add('jp-Containers-error');
          button.disabled = false;
        }
      );
    });
    return button;
  }
}
