/**
 * The sidebar's sections, each a React view of one part of the model, re-rendered when that
 * part changes. Elements carry stable `data-*` attributes (environment names, container and
 * job ids, statuses) so that tests and users' scripts can find them.
 */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { KernelAPI } from '@jupyterlab/services';
import { ReactWidget } from '@jupyterlab/ui-components';
import { ISignal } from '@lumino/signaling';
import * as React from 'react';

import {
  EnvironmentStatus,
  GpuRequest,
  IGpuUsage,
  IBuildError,
  IBuildEvent,
  IContainer,
  IEnvironment,
  IJob,
  JobStatus
} from './api';
import { ContainersModel, IBuildLog } from './model';
import { addPackage } from './packages';
import { openShareMenu } from './share';

/**
 * A section of the sidebar: a title and a React body bound to the model.
 */
abstract class Section extends ReactWidget {
  constructor(options: Section.IOptions) {
    super();
    this.model = options.model;
    this.addClass('jp-Containers-section');
    this.addClass(`jp-Containers-${options.name}`);
    this.node.dataset.section = options.name;
  }

  protected readonly model: ContainersModel;

  /** Re-render when any of these model signals fires (disconnected when this is disposed). */
  protected watch(...signals: ISignal<ContainersModel, unknown>[]): void {
    for (const signal of signals) {
      signal.connect(this._onModelChanged, this);
    }
  }

  private _onModelChanged(): void {
    this.update();
  }

  /** Show an action's error where it happened, until the next action. */
  protected async act(
    key: string,
    action: () => Promise<unknown>
  ): Promise<void> {
    this.busy.add(key);
    this.actionError = null;
    this.update();
    try {
      await action();
    } catch (error) {
      this.actionError = error instanceof Error ? error.message : String(error);
    } finally {
      this.busy.delete(key);
      this.update();
    }
  }

  protected busy = new Set<string>();
  protected actionError: string | null = null;
}

namespace Section {
  export interface IOptions {
    model: ContainersModel;
    /** Used for the `jp-Containers-<name>` class and the `data-section` attribute. */
    name: string;
  }
}

/**
 * The container engine: version and whether `--gpus` works, or what to do when none answers.
 */
export class EngineSection extends Section {
  constructor(model: ContainersModel) {
    super({ model, name: 'engine' });
    this.watch(model.engineChanged, model.targetsChanged, model.targetChanged);
  }

  render(): JSX.Element {
    return (
      <>
        <TargetPicker model={this.model} />
        {this._renderEngine()}
      </>
    );
  }

  private _renderEngine(): JSX.Element {
    const { data, error } = this.model.engine;
    if (error && !data) {
      return (
        <div className="jp-Containers-callout jp-mod-error" data-engine="error">
          <strong>The server does not answer.</strong>
          <div className="jp-Containers-message">{error}</div>
        </div>
      );
    }
    if (!data) {
      return (
        <div className="jp-Containers-muted">Asking the container engine…</div>
      );
    }
    if (!data.reachable) {
      return (
        <div
          className="jp-Containers-callout jp-mod-error"
          data-engine="unreachable"
        >
          <strong>No container engine answers.</strong>
          <div className="jp-Containers-message">{data.error}</div>
        </div>
      );
    }
    const parts = [
      `Docker ${data.version ?? ''}`.trim(),
      data.storage_driver,
      data.cpus ? Private.plural(data.cpus, 'CPU') : null,
      data.memory ? Private.bytes(data.memory) : null
    ].filter(Boolean);
    const gpu = data.gpu_summary ?? (data.gpu ? 'yes' : 'unknown');
    return (
      <>
        <div className="jp-Containers-engineLine" data-engine="reachable">
          <span className="jp-Containers-dot jp-mod-ok" />
          <span title={data.address}>{parts.join(' · ')}</span>
        </div>
        <div
          className="jp-Containers-muted jp-Containers-engineGpu"
          data-gpu={String(data.gpu ?? 'unknown')}
          title="Whether the engine grants --gpus (checked the way the engine decides it)"
        >
          GPUs: {gpu}
        </div>
      </>
    );
  }
}

/**
 * Which engine the sidebar shows and acts on: the configured one or a `[targets.NAME]` of the spec
 * (`GET targets`); shown once the spec names a target.
 */
function TargetPicker(props: { model: ContainersModel }): JSX.Element | null {
  const { model } = props;
  const targets = model.targets.data ?? [];
  if (targets.length < 2) {
    return null;
  }
  return (
    <label className="jp-Containers-targetPicker">
      <span>Target</span>
      <select
        className="jp-mod-styled jp-Containers-target"
        value={model.target ?? ''}
        title="The engine the sidebar shows, builds on and stops containers of"
        onChange={event => (model.target = event.target.value || null)}
      >
        {targets.map(target => {
          const name = target.name === '(default)' ? '' : target.name;
          return (
            <option key={target.name} value={name}>
              {target.name}
              {target.address ? ` · ${target.address}` : ''}
              {target.reachable === false ? ' (unreachable)' : ''}
            </option>
          );
        })}
      </select>
    </label>
  );
}

/**
 * The spec's environments, their image status, and builds with their live logs.
 */
export class EnvironmentsSection extends Section {
  constructor(
    model: ContainersModel,
    openFile: (path: string) => void = () => undefined
  ) {
    super({ model, name: 'environments' });
    this._openFile = openFile;
    this.watch(
      model.environmentsChanged,
      model.engineChanged,
      model.buildLogChanged
    );
  }

  render(): JSX.Element {
    const { data, error } = this.model.environments;
    return (
      <>
        <Private.Title label="Environments" count={data?.length} />
        {error && !Private.engineDown(this.model) && (
          <div className="jp-Containers-error">{error}</div>
        )}
        {this.actionError && (
          <div className="jp-Containers-error">{this.actionError}</div>
        )}
        {!data && Private.engineDown(this.model) && (
          <div className="jp-Containers-muted">
            Listed once the container engine answers.
          </div>
        )}
        {data && data.length === 0 && (
          <div className="jp-Containers-muted">
            No environments: add one to containers.toml.
          </div>
        )}
        <ul className="jp-Containers-list">
          {(data ?? []).map(env => this._renderEnvironment(env))}
        </ul>
      </>
    );
  }

  private _renderEnvironment(env: IEnvironment): JSX.Element {
    const log = this.model.buildLog(env.name);
    const building =
      env.status === 'building' || log?.build.status === 'building';
    const status: EnvironmentStatus = building ? 'building' : env.status;
    const busy = this.busy.has(env.name);
    return (
      <li
        key={env.name}
        className="jp-Containers-item jp-Containers-environment"
        data-environment={env.name}
        data-status={status}
      >
        <div className="jp-Containers-itemHeader">
          <span className="jp-Containers-name">{env.name}</span>
          <Private.Badge status={status} />
          <span className="jp-Containers-spacer" />
          <button
            className={`jp-Button jp-mod-styled jp-mod-small jp-Containers-button jp-Containers-build ${
              status === 'built' ? '' : 'jp-mod-accept'
            }`}
            disabled={building || busy}
            title={`Build the image of ${env.name}`}
            onClick={() => this.act(env.name, () => this.model.build(env.name))}
          >
            {building ? 'Building…' : status === 'built' ? 'Rebuild' : 'Build'}
          </button>
        </div>
        {env.description && (
          <div className="jp-Containers-description">{env.description}</div>
        )}
        <div className="jp-Containers-meta">
          {env.resources_text || 'no resource limits'}
          {env.image && (
            <span className="jp-Containers-image" title={env.image_id ?? ''}>
              {' · '}
              {env.image}
            </span>
          )}
        </div>
        <div className="jp-Containers-actions">
          <button
            className="jp-Button jp-mod-styled jp-mod-small jp-Containers-button jp-Containers-addPackage"
            disabled={building || busy}
            title={`Add a package to ${env.name} (checked on the index; the spec is edited and the environment rebuilt)`}
            onClick={() =>
              void this.act(env.name, () => addPackage(this.model, env))
            }
          >
            Add package…
          </button>
          <button
            className="jp-Button jp-mod-styled jp-mod-small jp-Containers-button jp-Containers-openSpec"
            disabled={!env.spec_path}
            title={
              env.spec_path
                ? `Open ${env.spec_path} in the editor`
                : `${env.spec_file} is outside the server root`
            }
            onClick={() => env.spec_path && this._openFile(env.spec_path)}
          >
            Open spec
          </button>
          <button
            className="jp-Button jp-mod-styled jp-mod-small jp-Containers-button jp-Containers-share"
            title={`Share ${env.name}: export a bundle, push or pull its image, export binder/ (see share.ts)`}
            onClick={event => openShareMenu(env.name, event.nativeEvent)}
          >
            Share…
          </button>
        </div>
        {building && log && <BuildProgress log={log} />}
        {status === 'failed' && env.build?.error && (
          <BuildFailure error={env.build.error} />
        )}
        {!building && log && log.build.status !== 'building' && (
          <LastBuild log={log} />
        )}
      </li>
    );
  }

  private _openFile: (path: string) => void;
}

/**
 * Why a build failed: the step (shortened), the last lines it printed, the full message on demand.
 */
function BuildFailure(props: { error: IBuildError }): JSX.Element {
  const { step, message, log_tail } = props.error;
  const [summary, ...rest] = message.split('\n');
  return (
    <div className="jp-Containers-buildError">
      <div className="jp-Containers-error">
        {step ? (
          <>
            Failed at{' '}
            <code className="jp-Containers-failedStep" title={step}>
              {Private.shortStep(step)}
            </code>
          </>
        ) : (
          <span className="jp-Containers-clamp">{summary}</span>
        )}
      </div>
      {log_tail && log_tail.length > 0 && (
        <pre className="jp-Containers-log">{log_tail.join('\n')}</pre>
      )}
      {(step || rest.length > 0) && (
        <details className="jp-Containers-details">
          <summary>Full error</summary>
          <div className="jp-Containers-message">{message}</div>
        </details>
      )}
    </div>
  );
}

/**
 * The last build of an environment once it ended: a summary line (steps, cached, time, image size)
 * and its whole log on demand -- open, at the failing step, when it failed.
 */
function LastBuild(props: { log: IBuildLog }): JSX.Element {
  const { build, events } = props.log;
  const failed = build.status === 'failed';
  const summary = build.summary;
  const parts = [failed ? 'Last build failed' : 'Last build'];
  if (summary) {
    parts.push(
      `${Private.plural(summary.steps, 'step')} (${summary.cached} cached)`,
      Private.duration(summary.seconds)
    );
    if (summary.image_size) {
      parts.push(Private.bytes(summary.image_size));
    }
  }
  const failing = React.useRef<HTMLSpanElement>(null);
  React.useEffect(() => {
    failing.current?.scrollIntoView({ block: 'nearest' });
  }, [events.length]);
  const failedStep = failed ? build.error?.step : undefined;
  const lastStep = failedStep
    ? [...events].reverse().find(e => e.kind === 'step')
    : undefined;
  return (
    <details
      className="jp-Containers-details jp-Containers-lastBuild"
      data-build-id={build.id}
      data-status={build.status}
      open={failed}
    >
      <summary>{parts.join(' · ')}</summary>
      <pre className="jp-Containers-log jp-Containers-buildLog">
        {events.map((event, index) =>
          event === lastStep ? (
            <span
              key={index}
              ref={failing}
              className="jp-Containers-failingStep"
            >
              {Private.logLine(event) + '\n'}
            </span>
          ) : (
            Private.logLine(event) + '\n'
          )
        )}
      </pre>
    </details>
  );
}

/**
 * A build's progress bar and the tail of its log, kept scrolled to the end.
 */
function BuildProgress(props: { log: IBuildLog }): JSX.Element {
  const { build, events } = props.log;
  const pre = React.useRef<HTMLPreElement>(null);
  React.useEffect(() => {
    if (pre.current) {
      pre.current.scrollTop = pre.current.scrollHeight;
    }
  }, [events.length]);
  const { done, total } = build.progress;
  const steps = [...events].reverse();
  const current = steps.find(e => e.kind === 'step');
  const fraction = total ? Math.min(1, done / total) : null;
  return (
    <div className="jp-Containers-build-progress" data-build-id={build.id}>
      <Private.Bar
        fraction={fraction}
        label={
          total ? `step ${Math.min(done + 1, total)} of ${total}` : 'starting…'
        }
        kind="build"
      />
      {current && (
        <div className="jp-Containers-step" title={current.step}>
          {current.step}
        </div>
      )}
      <pre className="jp-Containers-log jp-Containers-buildLog" ref={pre}>
        {events.slice(-200).map(Private.logLine).join('\n')}
      </pre>
    </div>
  );
}

/**
 * Running containers with CPU and memory bars against their limits, GPUs, and Stop.
 */
export class ContainersSection extends Section {
  constructor(
    model: ContainersModel,
    notebookOf: (kernelId: string) => string | null = () => null
  ) {
    super({ model, name: 'containers' });
    this._notebookOf = notebookOf;
    this.watch(model.containersChanged, model.engineChanged, model.jobsChanged);
  }

  /** How rows are grouped: not at all, by the notebook they serve, or by environment. */
  get groupBy(): ContainersSection.GroupBy {
    return this._groupBy;
  }
  set groupBy(value: ContainersSection.GroupBy) {
    this._groupBy = value;
    this.update();
  }

  /** The notebook a container serves: its kernel's, its %%container session's, its job's. */
  private _notebook(container: IContainer): string | null {
    if (container.role === 'session') {
      return container.parent_kernel_id
        ? this._notebookOf(container.parent_kernel_id)
        : null;
    }
    if (container.job) {
      const job = (this.model.jobs.data ?? []).find(
        j => j.id === container.job
      );
      return job?.notebook ?? null;
    }
    return container.kernel_id ? this._notebookOf(container.kernel_id) : null;
  }

  /** A kernel that Lab's kernels API knows (not a session's or a job's own kernel). */
  private _isLabKernel(container: IContainer): boolean {
    return (
      !!container.kernel_id && container.role !== 'session' && !container.job
    );
  }

  /**
   * Ask before stopping: name what loses its state (the notebook whose kernel it is, when one is
   * open), then stop. The notebook is told, on its next cell, that its user stopped it from here.
   */
  private async _confirmStop(container: IContainer): Promise<void> {
    const notebook =
      this._isLabKernel(container) && container.kernel_id
        ? this._notebookOf(container.kernel_id)
        : null;
    const name = container.environment ?? container.name;
    const loses = notebook
      ? `The notebook ${notebook} loses its kernel: its variables are gone, and its next cell says it was stopped from this sidebar.`
      : container.role === 'session'
        ? "A notebook's %%container session loses its variables; its next cell says it was stopped from this sidebar."
        : 'Whatever runs in it is stopped, and its state is lost.';
    const result = await showDialog({
      title: `Stop ${name}?`,
      body: `${container.role ?? 'container'} ${container.id.slice(0, 12)}. ${loses}`,
      buttons: [
        Dialog.cancelButton(),
        Dialog.warnButton({ label: 'Stop', ariaLabel: 'Stop the container' })
      ]
    });
    if (result.button.accept) {
      await this.act(container.id, () =>
        this.model.stopContainer(container.id)
      );
    }
  }

  /** Whose container it is: the notebook of a kernel, a %%container session, a job, a command. */
  private _owner(container: IContainer): string {
    if (this._isLabKernel(container) && container.kernel_id) {
      const notebook = this._notebookOf(container.kernel_id);
      return notebook ? `kernel of ${notebook}` : 'kernel (no open notebook)';
    }
    if (container.job) {
      return `job ${container.job}`;
    }
    if (container.role === 'session') {
      const notebook = container.parent_kernel_id
        ? this._notebookOf(container.parent_kernel_id)
        : null;
      const pool = container.pool ? ' (pool)' : '';
      return notebook
        ? `%%container session of ${notebook}${pool}`
        : `%%container session of a notebook${pool}`;
    }
    return container.role === 'run'
      ? 'command (jupyter-containers run)'
      : (container.role ?? 'container');
  }

  private async _restartKernel(kernelId: string): Promise<void> {
    await KernelAPI.restartKernel(kernelId, this.model.api.serverSettings);
    await this.model.refreshContainers();
  }

  private _notebookOf: (kernelId: string) => string | null;
  private _groupBy: ContainersSection.GroupBy = 'none';

  render(): JSX.Element {
    const { data, error } = this.model.containers;
    return (
      <>
        <Private.Title label="Running containers" count={data?.length}>
          <select
            className="jp-mod-styled jp-Containers-groupBy"
            value={this._groupBy}
            title="Group the containers by the notebook they serve or by environment"
            aria-label="Group containers"
            onChange={event =>
              (this.groupBy = event.target.value as ContainersSection.GroupBy)
            }
          >
            <option value="none">Not grouped</option>
            <option value="notebook">By notebook</option>
            <option value="environment">By environment</option>
          </select>
        </Private.Title>
        {error && !Private.engineDown(this.model) && (
          <div className="jp-Containers-error">{error}</div>
        )}
        {this.actionError && (
          <div className="jp-Containers-error">{this.actionError}</div>
        )}
        {!data && Private.engineDown(this.model) && (
          <div className="jp-Containers-muted">
            Listed once the container engine answers.
          </div>
        )}
        {data && data.length === 0 && (
          <div className="jp-Containers-muted">No containers running.</div>
        )}
        {this._groupBy === 'none' ? (
          <ul className="jp-Containers-list">
            {(data ?? []).map(c => this._renderContainer(c))}
          </ul>
        ) : (
          <ul className="jp-Containers-list jp-Containers-groups">
            {this._groups(data ?? []).map(([group, rows]) => (
              <li
                key={group}
                className="jp-Containers-group"
                data-group={group}
              >
                <div className="jp-Containers-groupTitle" title={group}>
                  {group}
                  <span className="jp-Containers-count">{rows.length}</span>
                </div>
                <ul className="jp-Containers-list">
                  {rows.map(c => this._renderContainer(c))}
                </ul>
              </li>
            ))}
          </ul>
        )}
      </>
    );
  }

  /** The rows by group, groups in name order (the rows without a notebook or environment last). */
  private _groups(rows: IContainer[]): [string, IContainer[]][] {
    const none =
      this._groupBy === 'notebook' ? 'No notebook' : 'No environment';
    const groups = new Map<string, IContainer[]>();
    for (const container of rows) {
      const key =
        (this._groupBy === 'notebook'
          ? this._notebook(container)
          : container.environment) ?? none;
      groups.set(key, [...(groups.get(key) ?? []), container]);
    }
    return [...groups.entries()].sort(([a], [b]) =>
      a === none ? 1 : b === none ? -1 : a.localeCompare(b)
    );
  }

  private _renderContainer(container: IContainer): JSX.Element {
    const usage = container.usage;
    const hostCpus = this.model.engine.data?.cpus ?? null;
    const cpus = container.resources.cpus ?? hostCpus;
    const cpuPercent = usage?.cpu_percent ?? null;
    const memoryLimit =
      usage?.memory_limit ?? container.resources.memory ?? null;
    const memoryUsed = usage?.memory_used ?? null;
    const stopping = this.busy.has(container.id);
    return (
      <li
        key={container.id}
        className="jp-Containers-item jp-Containers-container"
        data-container-id={container.id}
        data-environment={container.environment ?? ''}
      >
        <div className="jp-Containers-itemHeader">
          <span className="jp-Containers-name" title={container.name}>
            {container.environment ?? container.name}
          </span>
          {container.role && (
            <span className="jp-Containers-role">{container.role}</span>
          )}
          <span className="jp-Containers-spacer" />
          <button
            className="jp-Button jp-mod-styled jp-mod-small jp-mod-warn jp-Containers-button jp-Containers-stop"
            disabled={stopping}
            title={`Stop and remove ${container.name}`}
            onClick={() => void this._confirmStop(container)}
          >
            {stopping ? 'Stopping…' : 'Stop'}
          </button>
        </div>
        <div className="jp-Containers-meta jp-Containers-owner">
          {this._owner(container)}
          {container.created
            ? ` · up ${Private.duration(Date.now() / 1000 - Number(container.created))}`
            : ''}
        </div>
        <div className="jp-Containers-meta" title={container.image}>
          {container.id.slice(0, 12)} · {container.status}
          {container.outdated && (
            <>
              {' · '}
              <span
                className="jp-Containers-outdated"
                title={`${container.image} is older than the environment's current build`}
              >
                older image
              </span>
            </>
          )}
        </div>
        {container.outdated && this._isLabKernel(container) && (
          <div className="jp-Containers-actions jp-Containers-restartRow">
            <button
              className="jp-Button jp-mod-styled jp-mod-small jp-Containers-button jp-Containers-restart"
              title="Restart the kernel: a new container on the current image (its variables are lost)"
              onClick={() =>
                void this.act(container.id, () =>
                  this._restartKernel(container.kernel_id as string)
                )
              }
            >
              Restart on the new image
            </button>
          </div>
        )}
        <Private.Bar
          kind="cpu"
          fraction={
            cpuPercent !== null && cpus ? cpuPercent / (cpus * 100) : null
          }
          label={`CPU ${
            cpuPercent === null ? '…' : `${cpuPercent.toFixed(0)}%`
          }${cpus ? ` of ${Private.plural(cpus, 'CPU')}` : ''}${
            container.resources.cpus ? '' : ' (no limit)'
          }`}
        />
        <Private.Bar
          kind="memory"
          fraction={
            memoryUsed !== null && memoryLimit ? memoryUsed / memoryLimit : null
          }
          label={`Memory ${
            memoryUsed === null ? '…' : Private.bytes(memoryUsed)
          }${memoryLimit ? ` of ${Private.bytes(memoryLimit)}` : ' (no limit)'}`}
        />
        {Private.hasGpus(container.gpus) && (
          <div className="jp-Containers-gpus">
            GPUs: {Private.gpus(container.gpus)}
          </div>
        )}
        {(usage?.gpus ?? []).map(gpu => (
          <Private.Bar
            key={gpu.uuid || gpu.index}
            kind="gpu"
            fraction={
              gpu.utilization_percent === null
                ? null
                : gpu.utilization_percent / 100
            }
            label={Private.gpuLabel(gpu)}
          />
        ))}
      </li>
    );
  }
}

export namespace ContainersSection {
  export type GroupBy = 'none' | 'notebook' | 'environment';
}

/**
 * Notebook jobs: status, parameters, errors, Open output and Cancel.
 */
export class JobsSection extends Section {
  constructor(options: JobsSection.IOptions) {
    super({ model: options.model, name: 'jobs' });
    this._openPath = options.openPath;
    this._runNotebook = options.runNotebook;
    this.watch(options.model.jobsChanged);
  }

  render(): JSX.Element {
    const { data, error } = this.model.jobs;
    const jobs = [...(data ?? [])].sort((a, b) => b.created - a.created);
    const shown = jobs.slice(0, JobsSection.MAX_SHOWN);
    return (
      <>
        <Private.Title label="Jobs" count={data?.length}>
          <button
            className="jp-Button jp-mod-styled jp-mod-small jp-Containers-button jp-Containers-run"
            title="Run a notebook in a container"
            onClick={() => this._runNotebook()}
          >
            Run notebook…
          </button>
        </Private.Title>
        {error && <div className="jp-Containers-error">{error}</div>}
        {this.actionError && (
          <div className="jp-Containers-error">{this.actionError}</div>
        )}
        {data && data.length === 0 && (
          <div className="jp-Containers-muted">
            No jobs yet: use “Run in container…” on a notebook.
          </div>
        )}
        <ul className="jp-Containers-list">
          {shown.map(job => this._renderJob(job))}
        </ul>
        {jobs.length > shown.length && (
          <div className="jp-Containers-muted">
            {jobs.length - shown.length} older jobs not shown.
          </div>
        )}
      </>
    );
  }

  private _renderJob(job: IJob): JSX.Element {
    const active = job.status === 'queued' || job.status === 'running';
    const parameters = Object.entries(job.parameters)
      .map(([name, value]) => `${name}=${JSON.stringify(value)}`)
      .join(', ');
    const cancelling = this.busy.has(job.id);
    return (
      <li
        key={job.id}
        className="jp-Containers-item jp-Containers-job"
        data-job-id={job.id}
        data-status={job.status}
      >
        <div className="jp-Containers-itemHeader">
          <span className="jp-Containers-name" title={job.notebook}>
            {Private.basename(job.notebook)}
          </span>
          <Private.Badge status={job.status} />
        </div>
        <div className="jp-Containers-meta">
          {job.environment} · {Private.jobTime(job)}
        </div>
        {parameters && (
          <div
            className="jp-Containers-meta jp-Containers-parameters"
            title={parameters}
          >
            {parameters}
          </div>
        )}
        {job.error && job.status !== 'completed' && (
          <div className="jp-Containers-error">
            {job.error.ename
              ? `${job.error.ename}: ${job.error.evalue ?? ''}`
              : job.error.message}
          </div>
        )}
        {(active || (job.output_path && job.status !== 'queued')) && (
          <div className="jp-Containers-actions">
            {job.output_path && job.status !== 'queued' && (
              <button
                className="jp-Button jp-mod-styled jp-mod-small jp-Containers-button jp-Containers-open"
                title={`Open ${job.output_path}`}
                onClick={() => this._openPath(job.output_path ?? '')}
              >
                Open output
              </button>
            )}
            {active && (
              <button
                className="jp-Button jp-mod-styled jp-mod-small jp-mod-warn jp-Containers-button jp-Containers-cancel"
                disabled={cancelling}
                onClick={() =>
                  this.act(job.id, () => this.model.cancelJob(job.id))
                }
              >
                {cancelling ? 'Cancelling…' : 'Cancel'}
              </button>
            )}
          </div>
        )}
      </li>
    );
  }

  private _openPath: (path: string) => void;
  private _runNotebook: () => void;
}

export namespace JobsSection {
  export interface IOptions {
    model: ContainersModel;
    /** Open a file of the server root in Lab (a job's output notebook). */
    openPath: (path: string) => void;
    /** Start the "Run in container…" dialog. */
    runNotebook: () => void;
  }

  /** Jobs listed at most (newest first). */
  export const MAX_SHOWN = 25;
}

namespace Private {
  export function Title(props: {
    label: string;
    count?: number;
    children?: React.ReactNode;
  }): JSX.Element {
    return (
      <div className="jp-Containers-sectionTitle">
        <h3>
          {props.label}
          {props.count !== undefined && (
            <span className="jp-Containers-count">{props.count}</span>
          )}
        </h3>
        <span className="jp-Containers-spacer" />
        {props.children}
      </div>
    );
  }

  export function Badge(props: {
    status: EnvironmentStatus | JobStatus;
  }): JSX.Element {
    const slug = props.status.replace(/\s+/g, '-');
    return (
      <span
        className={`jp-Containers-badge jp-Containers-badge-${slug}`}
        data-status={props.status}
      >
        {props.status}
      </span>
    );
  }

  export function Bar(props: {
    fraction: number | null;
    label: string;
    kind: string;
  }): JSX.Element {
    const fraction = props.fraction;
    const percent =
      fraction === null ? 0 : Math.max(0, Math.min(1, fraction)) * 100;
    const level =
      fraction === null
        ? ''
        : fraction >= 0.9
          ? 'jp-mod-high'
          : fraction >= 0.7
            ? 'jp-mod-medium'
            : '';
    return (
      <div className={`jp-Containers-meter jp-Containers-meter-${props.kind}`}>
        <div className="jp-Containers-meterLabel">{props.label}</div>
        <div
          className={`jp-Containers-bar ${fraction === null ? 'jp-mod-indeterminate' : ''}`}
          role="progressbar"
          aria-label={props.label}
          aria-valuemin={0}
          aria-valuemax={100}
          aria-valuenow={fraction === null ? undefined : Math.round(percent)}
        >
          <div
            className={`jp-Containers-barFill ${level}`}
            style={{ width: `${percent}%` }}
          />
        </div>
      </div>
    );
  }

  export function engineDown(model: ContainersModel): boolean {
    return model.engine.data?.reachable === false;
  }

  export function logLine(event: IBuildEvent): string {
    switch (event.kind) {
      case 'step':
        return `▶ ${event.step}`;
      case 'done':
        return `✔ ${event.step}${event.cached ? ' (cached)' : ''}`;
      default:
        return event.text.replace(/\s+$/, '');
    }
  }

  /**
   * A Dockerfile step in one short line: its `[stage n/m] INSTRUCTION` head and the end of its
   * command (where the script or packages are named), without BuildKit mount options.
   */
  export function shortStep(step: string, max = 64): string {
    const text = step
      .replace(/--mount=\S+\s*/g, '')
      .replace(/\s+/g, ' ')
      .trim();
    if (text.length <= max) {
      return text;
    }
    const head = /^(\[[^\]]*\]\s*\S+)/.exec(text)?.[1] ?? '';
    const words = text.slice(head.length).trim().split(' ');
    let tail = words.pop() ?? '';
    while (
      words.length &&
      head.length + tail.length + words[words.length - 1].length < max - 3
    ) {
      tail = `${words.pop()} ${tail}`;
    }
    return `${head} … ${tail}`.trim();
  }

  export function bytes(value: number): string {
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let size = value;
    let unit = 0;
    while (size >= 1024 && unit < units.length - 1) {
      size /= 1024;
      unit += 1;
    }
    const digits = unit === 0 || size >= 100 ? 0 : 1;
    return `${size.toFixed(digits).replace(/\.0$/, '')} ${units[unit]}`;
  }

  export function plural(count: number, noun: string): string {
    const text = Number.isInteger(count)
      ? String(count)
      : count.toFixed(2).replace(/0+$/, '');
    return `${text} ${noun}${count === 1 ? '' : 's'}`;
  }

  export function gpuLabel(gpu: IGpuUsage): string {
    const utilization =
      gpu.utilization_percent === null
        ? '…'
        : `${gpu.utilization_percent.toFixed(0)}%`;
    const memory =
      gpu.memory_used !== null && gpu.memory_total
        ? `, ${Private.bytes(gpu.memory_used)} of ${Private.bytes(gpu.memory_total)}`
        : '';
    return `GPU ${gpu.index} ${utilization}${memory}`;
  }

  export function hasGpus(gpus: GpuRequest | null | undefined): boolean {
    return (
      gpus !== null &&
      gpus !== undefined &&
      gpus !== 0 &&
      !(Array.isArray(gpus) && gpus.length === 0)
    );
  }

  export function gpus(gpus: GpuRequest | null | undefined): string {
    if (gpus === 'all') {
      return 'all';
    }
    if (Array.isArray(gpus)) {
      return `device ${gpus.join(', ')}`;
    }
    return String(gpus ?? 0);
  }

  export function basename(path: string): string {
    return path.split('/').pop() ?? path;
  }

  export function duration(seconds: number): string {
    if (seconds < 60) {
      return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
    }
    const minutes = Math.floor(seconds / 60);
    if (minutes < 60) {
      return `${minutes} min ${Math.round(seconds % 60)} s`;
    }
    return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
  }

  export function jobTime(job: IJob): string {
    const created = new Date(job.created * 1000).toLocaleTimeString();
    if (job.started && job.finished) {
      return `${created}, took ${duration(job.finished - job.started)}`;
    }
    if (job.started) {
      return `${created}, running for ${duration(Date.now() / 1000 - job.started)}`;
    }
    return created;
  }
}
