/**
 * The "Run in container…" dialog: notebook, environment, resources and parameters of a job.
 */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { ReadonlyJSONValue } from '@lumino/coreutils';
import { Widget } from '@lumino/widgets';

import { IEnvironment, IJobRequest, IResourcesRequest, ITarget } from './api';
import { field, textInput } from './form';

/**
 * The dialog's form; `getValue()` gives the job request, or which field to fix.
 */
export class RunDialogBody
  extends Widget
  implements Dialog.IBodyWidget<RunDialogBody.IValue>
{
  constructor(options: RunDialogBody.IOptions) {
    super({ node: document.createElement('form') });
    this.addClass('jp-Containers-runDialog');
    this._environments = options.environments;
    const node = this.node as HTMLFormElement;
    node.addEventListener('submit', event => event.preventDefault());

    if (options.error) {
      // The server refused the last attempt: say why above the form, and mark the field it names.
      const error = document.createElement('div');
      error.className = 'jp-Containers-error jp-Containers-dialogError';
      error.textContent = options.error;
      node.appendChild(error);
    }
    this._notebook = textInput('notebook', options.notebook ?? '');
    this._notebook.placeholder = 'path/to/notebook.ipynb';
    this._notebook.required = true;
    node.appendChild(field('Notebook', this._notebook));

    this._environment = document.createElement('select');
    this._environment.name = 'environment';
    this._environment.className = 'jp-mod-styled';
    for (const env of options.environments) {
      const option = document.createElement('option');
      option.value = env.name;
      option.textContent =
        env.status === 'built' ? env.name : `${env.name} (${env.status})`;
      this._environment.appendChild(option);
    }
    if (options.environment) {
      this._environment.value = options.environment;
    }
    this._environment.addEventListener('change', () => this._showDefaults());
    node.appendChild(field('Environment', this._environment));

    // Where it runs: the configured engine or a [targets.NAME] of the spec (shown once the spec has one).
    this._target = document.createElement('select');
    this._target.name = 'target';
    this._target.className = 'jp-mod-styled';
    for (const target of options.targets ?? []) {
      const option = document.createElement('option');
      option.value = target.name === '(default)' ? '' : target.name;
      option.textContent = `${target.name}${target.address ? ` · ${target.address}` : ''}${
        target.reachable === false ? ' (unreachable)' : ''
      }`;
      this._target.appendChild(option);
    }
    this._target.value = options.target ?? '';
    if ((options.targets ?? []).length > 1) {
      node.appendChild(field('Target', this._target));
    }
    this._hint = document.createElement('div');
    this._hint.className = 'jp-Containers-hint';
    node.appendChild(this._hint);

    const grid = document.createElement('div');
    grid.className = 'jp-Containers-resourceGrid';
    for (const [name, label] of RunDialogBody.RESOURCE_FIELDS) {
      const input = textInput(name, options.values?.[name] ?? '');
      this._resources.set(name, input);
      grid.appendChild(field(label, input));
    }
    node.appendChild(grid);

    this._parameters = document.createElement('textarea');
    this._parameters.name = 'parameters';
    this._parameters.className = 'jp-mod-styled';
    this._parameters.rows = 4;
    this._parameters.value = options.values?.parameters ?? '';
    this._parameters.placeholder =
      'name=value, one per line\nalpha=0.5\nlabel="run 1"';
    node.appendChild(field('Parameters', this._parameters));
    const help = document.createElement('div');
    help.className = 'jp-Containers-hint';
    help.textContent =
      'Values are JSON (0.5, true, [1, 2], "text") or else plain text; they are set right after the notebook’s “parameters” cell.';
    node.appendChild(help);
    this._showDefaults();
    if (options.error) {
      const named = Array.from(
        node.querySelectorAll<HTMLInputElement | HTMLTextAreaElement>(
          'input, textarea'
        )
      ).find(field =>
        new RegExp(`\\b(resources\\.)?${field.name}\\b`).test(
          options.error ?? ''
        )
      );
      named?.classList.add('jp-mod-invalid');
      named?.setAttribute('aria-invalid', 'true');
    }
  }

  /** What the fields hold, to open the form again as it was. */
  rawValues(): Pick<
    RunDialogBody.IOptions,
    'notebook' | 'environment' | 'target' | 'values'
  > {
    const values: { [name: string]: string } = {
      parameters: this._parameters.value
    };
    for (const [name, input] of this._resources) {
      values[name] = input.value;
    }
    return {
      notebook: this._notebook.value,
      environment: this._environment.value,
      target: this._target.value,
      values
    };
  }

  /** The form's request, or which field to fix. */
  getValue(): RunDialogBody.IValue {
    const notebook = this._notebook.value.trim();
    const environment = this._environment.value;
    try {
      if (!notebook.endsWith('.ipynb')) {
        throw new Error(
          'Notebook: give the path of a .ipynb file, relative to the server root.'
        );
      }
      if (!environment) {
        throw new Error(
          'Environment: the workspace has no environment; add one to containers.toml.'
        );
      }
      const resources: { [name: string]: number | string } = {};
      for (const [name] of RunDialogBody.RESOURCE_FIELDS) {
        const text = this._resources.get(name)?.value.trim() ?? '';
        if (text && name === 'gpus') {
          RunDialogBody.checkGpus(text);
        }
        if (text) {
          resources[name] =
            /^\d+(\.\d+)?$/.test(text) && name !== 'memory'
              ? Number(text)
              : text;
        }
      }
      const request: IJobRequest = {
        notebook,
        environment,
        parameters: parseParameters(this._parameters.value),
        resources: resources as IResourcesRequest,
        ...(this._target.value ? { target: this._target.value } : {})
      };
      return { request, error: null };
    } catch (error) {
      return {
        request: null,
        error: error instanceof Error ? error.message : String(error)
      };
    }
  }

  private _showDefaults(): void {
    const env = this._environments.find(
      e => e.name === this._environment.value
    );
    const defaults = env?.resources ?? {};
    const shown: { [name: string]: string } = {
      cpus: defaults.cpus !== undefined ? String(defaults.cpus) : 'no limit',
      memory:
        defaults.memory !== undefined
          ? `${defaults.memory / 2 ** 20}m`
          : 'no limit',
      gpus: defaults.gpus !== undefined ? String(defaults.gpus) : '0',
      timeout: defaults.timeout !== undefined ? `${defaults.timeout}s` : 'none'
    };
    for (const [name, input] of this._resources) {
      input.placeholder = shown[name] ?? '';
    }
    this._hint.textContent = env
      ? `${env.description || env.name}${env.resources_text ? ` — defaults: ${env.resources_text}` : ''}${
          env.status === 'built'
            ? ''
            : ` — ${env.status}: the job builds it first`
        }`
      : '';
  }

  private _environments: IEnvironment[];
  private _notebook: HTMLInputElement;
  private _environment: HTMLSelectElement;
  private _target: HTMLSelectElement;
  private _hint: HTMLDivElement;
  private _resources = new Map<keyof IResourcesRequest, HTMLInputElement>();
  private _parameters: HTMLTextAreaElement;
}

export namespace RunDialogBody {
  /** A GPU as NVIDIA_VISIBLE_DEVICES names it (as the server checks it): index, 0:1, GPU-… or MIG-… */
  const GPU_ID =
    /^(\d{1,4}(:\d{1,4})?|GPU-[0-9a-fA-F]{1,32}(-[0-9a-fA-F]{1,32}){0,7}|MIG-(GPU-)?[0-9a-fA-F]{1,32}(-[0-9a-fA-F]{1,32}){0,7}(\/\d{1,4}\/\d{1,4})?)$/;

  /** Throws, naming the field and value, unless `text` is a count, `all` or device ids. */
  export function checkGpus(text: string): void {
    if (text === 'all' || /^\d+$/.test(text)) {
      return;
    }
    const ids = text
      .replace(/^device=/, '')
      .split(',')
      .map(id => id.trim());
    const bad = ids.find(id => !GPU_ID.test(id));
    if (bad !== undefined) {
      throw new Error(
        `GPUs: '${bad}' in '${text}' is not a GPU device id; use a count, 'all', indexes such as 0,2, GPU UUIDs (GPU-…) or MIG device ids (MIG-…), as 'nvidia-smi -L' lists them.`
      );
    }
  }

  export interface IOptions {
    environments: IEnvironment[];
    notebook?: string;
    environment?: string;
    /** The targets to offer (`GET targets`); the picker shows when there is more than the default. */
    targets?: ITarget[];
    /** The chosen target's name ('' or none: the configured engine). */
    target?: string;
    /** Field texts by name (resources and `parameters`), e.g. from `rawValues()`. */
    values?: { [name: string]: string };
    /** Why the server refused the last request: shown above the form, the field it names marked. */
    error?: string;
  }

  export interface IValue {
    request: IJobRequest | null;
    error: string | null;
  }

  /** The resource fields the dialog offers, with their labels. */
  export const RESOURCE_FIELDS: ReadonlyArray<
    [keyof IResourcesRequest, string]
  > = [
    ['cpus', 'CPUs'],
    ['memory', 'Memory (e.g. 512m, 2g)'],
    ['gpus', 'GPUs (count, all, or ids 0,2 / GPU-… / MIG-…)'],
    ['timeout', 'Timeout (e.g. 90, 10m, 1h)']
  ];
}

/**
 * `name=value` lines into parameters: JSON values, or else the text as a string.
 */
export function parseParameters(text: string): {
  [name: string]: ReadonlyJSONValue;
} {
  const out: { [name: string]: ReadonlyJSONValue } = {};
  text.split('\n').forEach((raw, index) => {
    const line = raw.trim();
    if (!line || line.startsWith('#')) {
      return;
    }
    const eq = line.indexOf('=');
    const name = eq < 0 ? '' : line.slice(0, eq).trim();
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
      throw new Error(
        `Parameters, line ${index + 1}: "${line}" is not name=value with a Python name.`
      );
    }
    const value = line.slice(eq + 1).trim();
    try {
      out[name] = JSON.parse(value) as ReadonlyJSONValue;
    } catch {
      out[name] = value;
    }
  });
  return out;
}

/**
 * Ask for a job until the form is valid or the user cancels (`null`); with the form's texts, to ask again,
 * as filled in, when the server refuses the request.
 */
export async function askForJobWithValues(
  options: RunDialogBody.IOptions
): Promise<{
  request: IJobRequest;
  values: { [name: string]: string };
} | null> {
  let current = options;
  for (;;) {
    const body = new RunDialogBody(current);
    const result = await showDialog<RunDialogBody.IValue>({
      title: 'Run in container',
      body,
      buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Run' })],
      focusNodeSelector: current.notebook ? 'select' : 'input'
    });
    if (!result.button.accept || !result.value) {
      return null;
    }
    if (result.value.request) {
      return {
        request: result.value.request,
        values: body.rawValues().values ?? {}
      };
    }
    await showDialog({
      title: 'Cannot run the notebook',
      body: result.value.error ?? '',
      buttons: [Dialog.okButton({ label: 'Fix it' })]
    });
    current = { ...current, ...body.rawValues() };
  }
}
