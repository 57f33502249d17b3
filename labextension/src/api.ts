/**
 * A typed client for the jupyter-containers REST API (`/jupyter-containers/api/`).
 *
 * Every call goes through `ServerConnection.makeRequest`, so the server's token and XSRF
 * handling apply as for any jupyter-server API. Errors become `ContainersAPI.ResponseError`
 * carrying the server's message, which always says what to change.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';
import { ReadonlyJSONObject, ReadonlyJSONValue } from '@lumino/coreutils';

/**
 * The container engine as the server sees it.
 */
export interface IEngine {
  reachable: boolean;
  /** Why the engine does not answer, and what to do about it. */
  error?: string;
  version?: string | null;
  api_version?: string | null;
  os?: string | null;
  architecture?: string | null;
  storage_driver?: string | null;
  cgroup_version?: string | null;
  cpus?: number | null;
  memory?: number | null;
  runtimes?: string[];
  gpu_runtimes?: string[];
  /** Whether the engine grants `--gpus` (the server checks it the way the engine decides); null: unknown. */
  gpu?: boolean | null;
  /** How it grants them, e.g. `nvidia device driver`, `nvidia runtime`, `CDI: …`. */
  gpu_support?: string[];
  /** The one line every front end shows: `yes (nvidia device driver)`, `none (install …)`. */
  gpu_summary?: string;
  address?: string;
}

/**
 * GPUs as the server reports them: a count, all of them, or device ids.
 */
export type GpuRequest = number | 'all' | string[];

/**
 * Resource limits, in bytes and seconds.
 */
export interface IResources {
  cpus?: number;
  memory?: number;
  memory_swap?: number;
  gpus?: GpuRequest;
  shm_size?: number;
  pids?: number;
  timeout?: number;
  network?: boolean;
}

/**
 * Resource limits for a request: human units (`"512m"`, `"10m"`, `"0,2"`) are accepted.
 */
export interface IResourcesRequest {
  cpus?: number | string;
  memory?: number | string;
  memory_swap?: number | string;
  gpus?: GpuRequest | string;
  shm_size?: number | string;
  pids?: number | string;
  timeout?: number | string;
  network?: boolean | string;
}

export type EnvironmentStatus =
  'never built' | 'built' | 'stale' | 'building' | 'failed';

export type BuildStatus = 'building' | 'built' | 'failed';

export interface IBuildError {
  message: string;
  step?: string;
  log_tail?: string[];
}

/**
 * A build the server runs (or ran) in the background.
 */
export interface IBuild {
  id: string;
  environment: string;
  spec_file: string;
  status: BuildStatus;
  started: number;
  finished: number | null;
  progress: { done: number; total: number | null };
  result: ReadonlyJSONObject | null;
  error: IBuildError | null;
  /** How many log events the build has so far. */
  events: number;
  /** True when a build request joined a build that was already running. */
  joined?: boolean;
  /** Once it ended: steps run, how many came from the cache, seconds, the image's size in bytes. */
  summary?: {
    steps: number;
    cached: number;
    seconds: number;
    image_size: number | null;
  };
}

export type BuildEventKind = 'step' | 'done' | 'log' | 'info';

export interface IBuildEvent {
  time: number;
  kind: BuildEventKind;
  step: string;
  text: string;
  index: number | null;
  total: number | null;
  cached: boolean | null;
  stream: string | null;
}

/**
 * A page of a build's log: the events after `since`, and where the next page starts.
 */
export interface IBuildLogPage {
  events: IBuildEvent[];
  next: number;
  build: IBuild;
}

/**
 * A named environment of the workspace's spec file.
 */
export interface IEnvironment {
  name: string;
  description: string;
  spec_file: string;
  /** The spec file relative to the server root (what Lab opens), null when it is outside the root. */
  spec_path?: string | null;
  status: EnvironmentStatus;
  image: string | null;
  image_id: string | null;
  resources: IResources;
  resources_text: string;
  build: IBuild | null;
}

export interface IEnvironmentDetail extends IEnvironment {
  spec: ReadonlyJSONObject;
  lock: ReadonlyJSONObject | null;
}

export interface IUsage {
  /** Percent of one CPU (200 = two CPUs busy). */
  cpu_percent: number | null;
  memory_used: number | null;
  memory_limit: number | null;
  pids: number | null;
  /** The engine host's figures for each GPU the container was given. */
  gpus?: IGpuUsage[];
}

/**
 * One GPU a container was given, as NVML / nvidia-smi on the engine's host report it (bytes, %).
 */
export interface IGpuUsage {
  index: string;
  uuid: string;
  name: string;
  utilization_percent: number | null;
  memory_used: number | null;
  memory_total: number | null;
}

/**
 * A running container that jupyter-containers created.
 */
export interface IContainer {
  id: string;
  name: string;
  environment: string | null;
  role: string | null;
  image: string;
  state: string;
  status: string;
  created: string | number | null;
  resources: IResources;
  gpus: GpuRequest | null | undefined;
  usage: IUsage | null;
  /** The Jupyter kernel a kernel container serves (null for sessions, jobs' runs and commands). */
  kernel_id?: string | null;
  /** The server's notebook job it runs, if any. */
  job?: string | null;
  /** It runs an older image than its environment's current build. */
  outdated?: boolean;
  /** A `%%container` session's: the kernel of the notebook it runs cells for. */
  parent_kernel_id?: string | null;
  /** A `%%container` session started ahead of its cell by the notebook's pool (`c.ContainerSessions.pool`). */
  pool?: boolean;
  /** The `[targets.NAME]` it runs on (null: the configured engine). */
  target?: string | null;
}

/**
 * An engine the server can act on: the configured one (`(default)`) or a `[targets.NAME]` of the spec.
 */
export interface ITarget {
  name: string;
  address?: string | null;
  reachable?: boolean;
  version?: string | null;
  error?: string | null;
}

/**
 * The spec file's state: a version that changes with any edit of it or of a file it reads, and its error.
 */
export interface ISpecState {
  version: string;
  error: string | null;
}

/**
 * What `POST environments/NAME/packages` answers: the requirement added and the build it started.
 */
export interface IPackageAdded {
  environment: string;
  requirement: string;
  spec_file: string;
  build: IBuild;
}

/**
 * One environment a notebook records (`GET notebooks/check`), against the workspace's spec.
 */
export interface INotebookEnvironment {
  name: string;
  status: 'matches' | 'spec-changed' | 'missing';
  message?: string | null;
}

export type JobStatus =
  | 'queued'
  | 'running'
  | 'completed'
  | 'failed'
  | 'cancelled'
  | 'timed out'
  | 'interrupted';

export interface IJobError {
  message: string;
  ename?: string;
  evalue?: string;
}

/**
 * A whole-notebook run in an environment.
 */
export interface IJob {
  id: string;
  notebook: string;
  environment: string;
  parameters: ReadonlyJSONObject;
  resources: IResources;
  status: JobStatus;
  created: number;
  started: number | null;
  finished: number | null;
  /** The output notebook, relative to the server root (openable in Lab). */
  output_path: string | null;
  error: IJobError | null;
}

/**
 * What `POST jobs` takes.
 */
export interface IJobRequest {
  /** Path of the notebook relative to the server root. */
  notebook: string;
  environment: string;
  /** A `[targets.NAME]` to run on (none: the configured engine). */
  target?: string;
  parameters?: { [name: string]: ReadonlyJSONValue };
  resources?: IResourcesRequest;
}

/**
 * The REST client.
 */
export class ContainersAPI {
  constructor(options: ContainersAPI.IOptions = {}) {
    this.serverSettings =
      options.serverSettings ?? ServerConnection.makeSettings();
  }

  readonly serverSettings: ServerConnection.ISettings;

  engine(target?: string | null): Promise<IEngine> {
    return this._request<IEngine>(`engine${Private.target(target)}`);
  }

  async targets(): Promise<ITarget[]> {
    const data = await this._request<{ targets: ITarget[] }>('targets');
    return data.targets;
  }

  /** The spec's state once its version is not `since`, or after `wait` seconds (long-polling). */
  specChanges(since = '', wait = 0): Promise<ISpecState> {
    const query = URLExt.objectToQueryString({ since, wait });
    return this._request<ISpecState>(`spec/changes${query}`);
  }

  /** Check a package on the index, add it to the environment's spec, and start a build. */
  addPackage(
    name: string,
    request: { package: string; version?: string; target?: string }
  ): Promise<IPackageAdded> {
    return this._request<IPackageAdded>(
      `environments/${encodeURIComponent(name)}/packages`,
      { method: 'POST', body: JSON.stringify(request) }
    );
  }

  /** The environments a notebook records, each against the workspace's spec. */
  async checkNotebook(path: string): Promise<INotebookEnvironment[]> {
    const query = URLExt.objectToQueryString({ path });
    const data = await this._request<{
      environments: INotebookEnvironment[];
    }>(`notebooks/check${query}`);
    return data.environments;
  }

  /** Write a notebook's recorded environment into the workspace's spec (and lock). */
  restoreNotebook(
    path: string,
    environment: string,
    overwrite = false
  ): Promise<ReadonlyJSONObject> {
    return this._request<ReadonlyJSONObject>('notebooks/restore', {
      method: 'POST',
      body: JSON.stringify({ path, environment, overwrite })
    });
  }

  schema(): Promise<ReadonlyJSONObject> {
    return this._request<ReadonlyJSONObject>('schema');
  }

  async environments(target?: string | null): Promise<IEnvironment[]> {
    const data = await this._request<{ environments: IEnvironment[] }>(
      `environments${Private.target(target)}`
    );
    return data.environments;
  }

  environment(name: string): Promise<IEnvironmentDetail> {
    return this._request<IEnvironmentDetail>(
      `environments/${encodeURIComponent(name)}`
    );
  }

  /** Start (or join) a build of an environment. */
  build(name: string, target?: string | null): Promise<IBuild> {
    return this._request<IBuild>(
      `environments/${encodeURIComponent(name)}/build`,
      { method: 'POST', body: JSON.stringify(target ? { target } : {}) }
    );
  }

  getBuild(id: string): Promise<IBuild> {
    return this._request<IBuild>(`builds/${encodeURIComponent(id)}`);
  }

  /**
   * The build's events after `since`; with `wait` (seconds, at most 30) the server holds the
   * request until an event comes or the build ends (long-polling).
   */
  buildLog(id: string, since = 0, wait = 0): Promise<IBuildLogPage> {
    const query = URLExt.objectToQueryString({ since, wait });
    return this._request<IBuildLogPage>(
      `builds/${encodeURIComponent(id)}/log${query}`
    );
  }

  async containers(target?: string | null): Promise<IContainer[]> {
    const data = await this._request<{ containers: IContainer[] }>(
      `containers${Private.target(target)}`
    );
    return data.containers;
  }

  async stopContainer(id: string, target?: string | null): Promise<void> {
    await this._request<null>(
      `containers/${encodeURIComponent(id)}${Private.target(target)}`,
      { method: 'DELETE' }
    );
  }

  async containerLogs(id: string, tail = 500): Promise<string> {
    const query = URLExt.objectToQueryString({ tail });
    const data = await this._request<{ logs: string }>(
      `containers/${encodeURIComponent(id)}/logs${query}`
    );
    return data.logs;
  }

  async jobs(): Promise<IJob[]> {
    const data = await this._request<{ jobs: IJob[] }>('jobs');
    return data.jobs;
  }

  getJob(id: string): Promise<IJob> {
    return this._request<IJob>(`jobs/${encodeURIComponent(id)}`);
  }

  submitJob(request: IJobRequest): Promise<IJob> {
    return this._request<IJob>('jobs', {
      method: 'POST',
      body: JSON.stringify(request)
    });
  }

  cancelJob(id: string): Promise<IJob> {
    return this._request<IJob>(`jobs/${encodeURIComponent(id)}`, {
      method: 'DELETE'
    });
  }

  /** The output notebook of a job, as nbformat JSON. */
  jobOutput(id: string): Promise<ReadonlyJSONObject> {
    return this._request<ReadonlyJSONObject>(
      `jobs/${encodeURIComponent(id)}/output`
    );
  }

  private async _request<T>(path: string, init: RequestInit = {}): Promise<T> {
    const settings = this.serverSettings;
    const url = URLExt.join(settings.baseUrl, ContainersAPI.PATH, path);
    let response: Response;
    try {
      response = await ServerConnection.makeRequest(url, init, settings);
    } catch (error) {
      throw new ContainersAPI.ResponseError(
        0,
        `the Jupyter server does not answer: ${String(error)}`
      );
    }
    const text = await response.text();
    let data: unknown = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = text;
      }
    }
    if (!response.ok) {
      throw new ContainersAPI.ResponseError(
        response.status,
        Private.messageOf(data) ?? response.statusText
      );
    }
    return data as T;
  }
}

export namespace ContainersAPI {
  /** Where the server extension serves its API, below the server's base URL. */
  export const PATH = 'jupyter-containers/api';

  export interface IOptions {
    serverSettings?: ServerConnection.ISettings;
  }

  /**
   * An error answer: the HTTP status (0 when the server did not answer) and its message.
   */
  export class ResponseError extends Error {
    constructor(
      readonly status: number,
      message: string
    ) {
      super(message);
      this.name = 'ContainersAPI.ResponseError';
    }
  }
}

namespace Private {
  /** `?target=NAME`, or nothing for the configured engine. */
  export function target(name?: string | null): string {
    return name ? URLExt.objectToQueryString({ target: name }) : '';
  }

  export function messageOf(data: unknown): string | null {
    if (typeof data === 'string' && data) {
      return data;
    }
    if (data !== null && typeof data === 'object' && 'message' in data) {
      const message = (data as { message: unknown }).message;
      return typeof message === 'string' && message ? message : null;
    }
    return null;
  }
}
