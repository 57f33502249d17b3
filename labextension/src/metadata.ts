/**
 * Interactive run records: the environments a notebook used go into its metadata.
 *
 * The kernel side sends each environment's record (environment, normalized spec, lock, image id,
 * registry digest, resources, target, builder version; the shape `execute` writes):
 *
 * - a `%%container` cell: the local kernel opens a comm to `jupyter_containers.environment` with the
 *   record as its data (a comm, so nothing lands in the cell's outputs);
 * - a container kernel: the server knows the container the kernel runs in, and answers
 *   `GET kernels/ID/record` once the kernel is up (again after a restart).
 *
 * The record is written into the open notebook's model, under
 * `metadata.jupyter_containers.environments.NAME`: the user sees the notebook change and saves it
 * (nothing edits the file behind their back); a notebook that used several environments records each.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { Kernel, KernelMessage, ServerConnection } from '@jupyterlab/services';
import { JSONExt, JSONObject, PartialJSONObject } from '@lumino/coreutils';

/** The comm target the kernel side opens (share/metadata.py: COMM_TARGET). */
export const COMM_TARGET = 'jupyter_containers.environment';
/** Our namespace in notebook metadata (jobs/provenance.py: RECORD_KEY). */
export const RECORD_KEY = 'jupyter_containers';
/** Kernel names of container kernels (kernel/kernelspec.py). */
const CONTAINER_KERNEL = /^containers-/;

/**
 * Put `record` under `metadata.jupyter_containers.environments[record.environment]` of the notebook;
 * false when it was already there as it is (the notebook is not marked changed then).
 */
export function writeRecord(panel: NotebookPanel, record: JSONObject): boolean {
  const model = panel.model;
  const name = record.environment;
  if (!model || typeof name !== 'string' || !name) {
    return false;
  }
  const ours = {
    ...((model.getMetadata(RECORD_KEY) as PartialJSONObject | undefined) ?? {})
  };
  const environments = {
    ...((ours.environments as PartialJSONObject | undefined) ?? {})
  };
  if (
    environments[name] !== undefined &&
    JSONExt.deepEqual(environments[name] as PartialJSONObject, record)
  ) {
    return false;
  }
  environments[name] = record;
  ours.environments = environments;
  model.setMetadata(RECORD_KEY, ours);
  return true;
}

/**
 * Record the environments of every notebook `tracker` opens.
 */
export function recordEnvironments(
  tracker: INotebookTracker,
  serverSettings: ServerConnection.ISettings
): void {
  const watch = (panel: NotebookPanel): void =>
    new RecordWatcher(panel, serverSettings).start();
  tracker.forEach(watch);
  tracker.widgetAdded.connect((_, panel) => watch(panel));
}

/**
 * Follows one notebook's kernel: its comms, and (for a container kernel) its container's record.
 */
class RecordWatcher {
  constructor(
    private _panel: NotebookPanel,
    private _settings: ServerConnection.ISettings
  ) {}

  start(): void {
    const context = this._panel.sessionContext;
    context.kernelChanged.connect((_, change) =>
      this._connect(change.newValue)
    );
    context.statusChanged.connect((_, status) => this._onStatus(status));
    void context.ready.then(() =>
      this._connect(context.session?.kernel ?? null)
    );
  }

  private _connect(kernel: Kernel.IKernelConnection | null): void {
    this._recorded = null;
    if (!kernel || this._registered.has(kernel)) {
      return;
    }
    this._registered.add(kernel);
    kernel.registerCommTarget(
      COMM_TARGET,
      (_comm: Kernel.IComm, msg: KernelMessage.ICommOpenMsg) => {
        const data = msg.content.data as JSONObject;
        if (data && typeof data.environment === 'string') {
          writeRecord(this._panel, data);
        }
      }
    );
    this._onStatus(kernel.status);
  }

  /** A container kernel that is up: ask the server for its container's record (once per start). */
  private _onStatus(status: Kernel.Status): void {
    const kernel = this._panel.sessionContext.session?.kernel;
    if (!kernel || !CONTAINER_KERNEL.test(kernel.name)) {
      return;
    }
    if (status === 'restarting' || status === 'autorestarting') {
      this._recorded = null;
      return;
    }
    if (status !== 'idle' || this._recorded === kernel.id) {
      return;
    }
    this._recorded = kernel.id;
    void this._fetch(kernel.id).then(record => {
      if (record) {
        writeRecord(this._panel, record);
      } else if (this._recorded === kernel.id) {
        this._recorded = null; // not there yet: try again on the next idle
      }
    });
  }

  private async _fetch(kernelId: string): Promise<JSONObject | null> {
    const url = URLExt.join(
      this._settings.baseUrl,
      'jupyter-containers/api/kernels',
      encodeURIComponent(kernelId),
      'record'
    );
    try {
      const response = await ServerConnection.makeRequest(
        url,
        {},
        this._settings
      );
      return response.ok ? ((await response.json()) as JSONObject) : null;
    } catch {
      return null;
    }
  }

  private _recorded: string | null = null;
  private _registered = new WeakSet<Kernel.IKernelConnection>();
}
