/**
 * The sidebar's model: what the server says about the engine, environments, containers and
 * jobs, refreshed by polls that back off on errors and stand by while the page is hidden, plus
 * the logs of running builds, followed through the long-polling log endpoint.
 */
import { IDisposable } from '@lumino/disposable';
import { Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';

import {
  ContainersAPI,
  IBuild,
  IBuildEvent,
  IBuildLogPage,
  IContainer,
  IEngine,
  IEnvironment,
  IJob,
  IJobRequest,
  IPackageAdded,
  ISpecState,
  ITarget
} from './api';

/**
 * The log of one build, as far as it has been followed.
 */
export interface IBuildLog {
  /** The environment being built. */
  environment: string;
  /** The build's latest state. */
  build: IBuild;
  /** The latest events (at most `ContainersModel.MAX_LOG_EVENTS`). */
  events: IBuildEvent[];
}

/**
 * Data from one endpoint, or why it could not be had.
 */
export interface ISection<T> {
  /** `null` until the first answer. */
  data: T | null;
  /** The server's message when the last request failed. */
  error: string | null;
}

export class ContainersModel implements IDisposable {
  constructor(options: ContainersModel.IOptions = {}) {
    this.api = options.api ?? new ContainersAPI();
    const interval = options.interval ?? 3000;
    const poll = <T>(
      name: string,
      every: number,
      fetch: () => Promise<T>
    ): Poll<T> =>
      new Poll<T>({
        name: `jupyter-containers:${name}`,
        factory: fetch,
        frequency: { interval: every, backoff: true, max: 60 * 1000 },
        // Rest while the page is hidden, and while nobody looks at the sidebar.
        standby: () => !this._active || 'when-hidden'
      });
    this._polls = [
      poll('engine', interval * 4, () => this.refreshEngine()),
      poll('environments', interval * 2, () => this.refreshEnvironments()),
      poll('containers', interval, () => this.refreshContainers()),
      poll('jobs', interval, () => this.refreshJobs()),
      poll('targets', interval * 10, () => this.refreshTargets())
    ];
    if (options.watchSpec !== false) {
      void this._watchSpec();
    }
  }

  readonly api: ContainersAPI;

  /**
   * Whether a view shows the model: the polls stand by while it is false.
   */
  get active(): boolean {
    return this._active;
  }
  set active(value: boolean) {
    if (value === this._active) {
      return;
    }
    this._active = value;
    if (value) {
      this._polls.forEach(poll => void poll.refresh());
    }
  }

  get engine(): ISection<IEngine> {
    return this._engine;
  }
  get environments(): ISection<IEnvironment[]> {
    return this._environments;
  }
  get containers(): ISection<IContainer[]> {
    return this._containers;
  }
  get jobs(): ISection<IJob[]> {
    return this._jobs;
  }
  get targets(): ISection<ITarget[]> {
    return this._targets;
  }

  /**
   * The `[targets.NAME]` the sidebar shows and acts on (null: the configured engine). Setting it empties
   * what was shown of the previous target and asks the new one at once.
   */
  get target(): string | null {
    return this._target;
  }
  set target(value: string | null) {
    if (value === this._target) {
      return;
    }
    this._target = value;
    this._engine = { data: null, error: null };
    this._environments = { data: null, error: null };
    this._containers = { data: null, error: null };
    this._engineChanged.emit(this._engine);
    this._environmentsChanged.emit(this._environments);
    this._containersChanged.emit(this._containers);
    this._targetChanged.emit(value);
    void this.refresh();
  }
  get targetChanged(): ISignal<this, string | null> {
    return this._targetChanged;
  }
  get targetsChanged(): ISignal<this, ISection<ITarget[]>> {
    return this._targetsChanged;
  }

  get engineChanged(): ISignal<this, ISection<IEngine>> {
    return this._engineChanged;
  }
  get environmentsChanged(): ISignal<this, ISection<IEnvironment[]>> {
    return this._environmentsChanged;
  }
  get containersChanged(): ISignal<this, ISection<IContainer[]>> {
    return this._containersChanged;
  }
  get jobsChanged(): ISignal<this, ISection<IJob[]>> {
    return this._jobsChanged;
  }
  /** Emits the name of the environment whose build log changed. */
  get buildLogChanged(): ISignal<this, string> {
    return this._buildLogChanged;
  }

  /** The log of the environment's latest followed build, if any. */
  buildLog(environment: string): IBuildLog | undefined {
    return this._logs.get(environment);
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    this._polls.forEach(poll => poll.dispose());
    Signal.clearData(this);
  }

  /** Ask every endpoint again now (the polls keep their schedules). */
  async refresh(): Promise<void> {
    await Promise.allSettled([
      this.refreshTargets(),
      this.refreshEngine(),
      this.refreshEnvironments(),
      this.refreshContainers(),
      this.refreshJobs()
    ]);
  }

  async refreshEngine(): Promise<IEngine> {
    const wasReachable = this._engine.data?.reachable;
    const engine = await this._load(
      () => this.api.engine(this._target),
      this._engine,
      section => (this._engine = section),
      this._engineChanged
    );
    if (engine.reachable && wasReachable === false) {
      // The engine is back: do not wait for the backed-off polls.
      void this.refresh();
    }
    return engine;
  }

  async refreshEnvironments(): Promise<IEnvironment[]> {
    const environments = await this._load(
      () => this.api.environments(this._target),
      this._environments,
      section => (this._environments = section),
      this._environmentsChanged,
      // An invalid or missing spec: its error replaces the list (no "built / Rebuild" of a spec that
      // no longer parses).
      error =>
        error instanceof ContainersAPI.ResponseError &&
        (error.status === 400 || error.status === 404)
    );
    for (const env of environments) {
      // A running build is followed live; an ended one (built before this page loaded) is fetched once,
      // so that its log and summary stay viewable.
      if (
        env.build &&
        (env.status === 'building' || !this._logs.has(env.name))
      ) {
        this._follow(env.name, env.build);
      }
    }
    return environments;
  }

  refreshContainers(): Promise<IContainer[]> {
    return this._load(
      () => this.api.containers(this._target),
      this._containers,
      section => (this._containers = section),
      this._containersChanged
    );
  }

  refreshTargets(): Promise<ITarget[]> {
    return this._load(
      () => this.api.targets(),
      this._targets,
      section => (this._targets = section),
      this._targetsChanged
    );
  }

  refreshJobs(): Promise<IJob[]> {
    return this._load(
      () => this.api.jobs(),
      this._jobs,
      section => (this._jobs = section),
      this._jobsChanged
    );
  }

  /** Build (or join the build of) an environment and follow its log. */
  async build(name: string): Promise<IBuild> {
    const build = await this.api.build(name, this._target);
    this._follow(name, build);
    void this.refreshEnvironments().catch(() => undefined);
    return build;
  }

  async stopContainer(id: string): Promise<void> {
    await this.api.stopContainer(id, this._target);
    await this.refreshContainers().catch(() => undefined);
  }

  async submitJob(request: IJobRequest): Promise<IJob> {
    const job = await this.api.submitJob(request);
    await this.refreshJobs().catch(() => undefined);
    return job;
  }

  async cancelJob(id: string): Promise<IJob> {
    const job = await this.api.cancelJob(id);
    await this.refreshJobs().catch(() => undefined);
    return job;
  }

  /** Check a package on the index, add it to the environment's spec, and follow the build it started. */
  async addPackage(
    name: string,
    pkg: string,
    version?: string
  ): Promise<IPackageAdded> {
    const added = await this.api.addPackage(name, {
      package: pkg,
      ...(version ? { version } : {}),
      ...(this._target ? { target: this._target } : {})
    });
    this._follow(name, added.build);
    void this.refreshEnvironments().catch(() => undefined);
    return added;
  }

  /**
   * Follow the spec's version through the long-polling `spec/changes` endpoint while a view shows the
   * model: an edit of the spec (or of a file it reads) refreshes the environments within a fraction of
   * a second, replacing old errors with the new state.
   */
  private async _watchSpec(): Promise<void> {
    let version: string | null = null;
    let failures = 0;
    while (!this._isDisposed) {
      if (!this._active || document.hidden) {
        await Private.sleep(500);
        continue;
      }
      let state: ISpecState;
      try {
        state = await this.api.specChanges(version ?? '', version ? 20 : 0);
        failures = 0;
      } catch {
        failures += 1;
        await Private.sleep(Math.min(30000, 1000 * 2 ** failures));
        continue;
      }
      if (version !== null && state.version !== version) {
        this._specChanged.emit(state);
        await this.refreshEnvironments().catch(() => undefined);
      }
      version = state.version;
    }
  }

  /** Emits the spec's new state after an edit of the spec or of a file it reads. */
  get specChanged(): ISignal<this, ISpecState> {
    return this._specChanged;
  }

  private async _load<T>(
    fetch: () => Promise<T>,
    current: ISection<T>,
    store: (section: ISection<T>) => void,
    changed: Signal<this, ISection<T>>,
    replaces: (error: unknown) => boolean = () => false
  ): Promise<T> {
    try {
      const data = await fetch();
      const section = { data, error: null };
      store(section);
      changed.emit(section);
      return data;
    } catch (error) {
      // Keep showing what we had: a passing error should not empty the panel (unless it replaces it).
      const section = {
        data: replaces(error) ? null : current.data,
        error: Private.message(error)
      };
      store(section);
      changed.emit(section);
      throw error; // the poll backs off
    }
  }

  /**
   * Follow a build's log until it ends, long-polling the log endpoint.
   */
  private _follow(environment: string, build: IBuild): void {
    const current = this._logs.get(environment);
    if (this._following.has(build.id) || current?.build.id === build.id) {
      return;
    }
    this._following.add(build.id);
    const log: IBuildLog = { environment, build, events: [] };
    this._logs.set(environment, log);
    this._buildLogChanged.emit(environment);
    void this._followLoop(log).finally(() => {
      this._following.delete(build.id);
      if (!this._isDisposed) {
        void this.refreshEnvironments().catch(() => undefined);
      }
    });
  }

  private async _followLoop(log: IBuildLog): Promise<void> {
    let since = 0;
    let failures = 0;
    while (!this._isDisposed) {
      let page: IBuildLogPage;
      try {
        page = await this.api.buildLog(log.build.id, since, 20);
        failures = 0;
      } catch (error) {
        if (
          error instanceof ContainersAPI.ResponseError &&
          error.status === 404
        ) {
          return; // the server restarted: builds are kept while it runs
        }
        failures += 1;
        await Private.sleep(Math.min(30000, 1000 * 2 ** failures));
        continue;
      }
      since = page.next;
      log.build = page.build;
      if (page.events.length) {
        log.events = log.events
          .concat(page.events)
          .slice(-ContainersModel.MAX_LOG_EVENTS);
      }
      this._buildLogChanged.emit(log.environment);
      if (page.build.status !== 'building' && since >= page.build.events) {
        return;
      }
    }
  }

  private _isDisposed = false;
  private _active = false;
  private _polls: Poll[];
  private _engine: ISection<IEngine> = { data: null, error: null };
  private _environments: ISection<IEnvironment[]> = { data: null, error: null };
  private _containers: ISection<IContainer[]> = { data: null, error: null };
  private _jobs: ISection<IJob[]> = { data: null, error: null };
  private _targets: ISection<ITarget[]> = { data: null, error: null };
  private _target: string | null = null;
  private _targetChanged = new Signal<this, string | null>(this);
  private _targetsChanged = new Signal<this, ISection<ITarget[]>>(this);
  private _specChanged = new Signal<this, ISpecState>(this);
  private _logs = new Map<string, IBuildLog>();
  private _following = new Set<string>();
  private _engineChanged = new Signal<this, ISection<IEngine>>(this);
  private _environmentsChanged = new Signal<this, ISection<IEnvironment[]>>(
    this
  );
  private _containersChanged = new Signal<this, ISection<IContainer[]>>(this);
  private _jobsChanged = new Signal<this, ISection<IJob[]>>(this);
  private _buildLogChanged = new Signal<this, string>(this);
}

export namespace ContainersModel {
  export interface IOptions {
    /** The REST client (default: one on the page's server settings). */
    api?: ContainersAPI;
    /** Base polling interval in ms: containers and jobs; environments 2×, engine 4×, targets 10×. */
    interval?: number;
    /** Follow the spec's changes (long-polling `spec/changes`; default true). */
    watchSpec?: boolean;
  }

  /** Build log events kept per environment. */
  export const MAX_LOG_EVENTS = 1000;
}

namespace Private {
  export function message(error: unknown): string {
    return error instanceof Error ? error.message : String(error);
  }

  export function sleep(ms: number): Promise<void> {
    return new Promise(resolve => setTimeout(resolve, ms));
  }
}
