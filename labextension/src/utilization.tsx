/**
 * The sidebar's utilization line: used / total per target and, for a target of several nodes
 * (a swarm, a cluster), per node, from `GET utilization` (the same figures as the Prometheus
 * metrics and the REST API, computed once on the server: jupyter_containers/utilization.py).
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';
import { ReactWidget } from '@jupyterlab/ui-components';
import { Poll } from '@lumino/polling';
import * as React from 'react';

import { ContainersAPI } from './api';
import { ContainersModel } from './model';

/** Used / total × 100; null where it cannot be told (no figure yet, no GPU). */
export interface IUtilization {
  cpu_percent: number | null;
  memory_percent: number | null;
  gpu_percent: number | null;
}

/** What a node (or a whole target) holds and what our containers use of it. */
export interface ICapacity {
  cpus: number;
  memory: number;
  gpus: number;
  cpus_used: number;
  memory_used: number;
  containers: number;
  utilization: IUtilization;
}

export interface INodeUtilization extends ICapacity {
  name: string;
  address: string | null;
  state: string;
}

/** One target of `GET utilization`: `(default)` (the configured engine) or a `[targets.NAME]`. */
export interface ITargetUtilization extends Partial<ICapacity> {
  name: string;
  target: string | null;
  reachable: boolean;
  error?: string;
  nodes: INodeUtilization[];
}

/** `GET utilization`: every target's figures. */
export async function fetchUtilization(
  settings: ServerConnection.ISettings
): Promise<ITargetUtilization[]> {
  const url = URLExt.join(settings.baseUrl, ContainersAPI.PATH, 'utilization');
  const response = await ServerConnection.makeRequest(url, {}, settings);
  const data = await response.json();
  if (!response.ok) {
    throw new ContainersAPI.ResponseError(
      response.status,
      (data && data.message) || response.statusText
    );
  }
  return (data as { targets: ITargetUtilization[] }).targets;
}

/**
 * A compact section: one line per target, one more per node when a target has several.
 */
export class UtilizationSection extends ReactWidget {
  constructor(model: ContainersModel, interval = 5000) {
    super();
    this.addClass('jp-Containers-section');
    this.addClass('jp-Containers-utilization');
    this.node.dataset.section = 'utilization';
    const settings = model.api.serverSettings;
    this._poll = new Poll({
      name: 'jupyter-containers:utilization',
      factory: async () => {
        try {
          this._targets = await fetchUtilization(settings);
          this._error = null;
        } catch (error) {
          this._error = error instanceof Error ? error.message : String(error);
          throw error;
        } finally {
          this.update();
        }
      },
      frequency: { interval, backoff: true, max: 60 * 1000 },
      standby: () => !model.active || 'when-hidden'
    });
  }

  dispose(): void {
    this._poll.dispose();
    super.dispose();
  }

  render(): JSX.Element | null {
    if (this._targets === null) {
      return this._error ? (
        <div className="jp-Containers-muted">
          Utilization unavailable: {this._error}
        </div>
      ) : null;
    }
    return (
      <div
        className="jp-Containers-utilizationList"
        title="Used / total: CPU and memory of what the nodes hold, GPUs' mean utilization (GET utilization)"
      >
        {this._targets.map(target => (
          <React.Fragment key={target.name}>
            <UtilizationLine
              kind="target"
              name={target.name}
              reachable={target.reachable}
              error={target.error}
              figures={target.utilization}
              containers={target.containers}
            />
            {target.nodes.length > 1 &&
              target.nodes.map(node => (
                <UtilizationLine
                  key={node.name}
                  kind="node"
                  name={node.name}
                  reachable={node.state === 'ready' || node.state === 'active'}
                  figures={node.utilization}
                  containers={node.containers}
                  title={`${node.address ?? ''} ${node.cpus} CPUs`}
                />
              ))}
          </React.Fragment>
        ))}
      </div>
    );
  }

  private _poll: Poll;
  private _targets: ITargetUtilization[] | null = null;
  private _error: string | null = null;
}

function UtilizationLine(props: {
  kind: 'target' | 'node';
  name: string;
  reachable: boolean;
  error?: string;
  figures?: IUtilization;
  containers?: number;
  title?: string;
}): JSX.Element {
  const figures = props.figures;
  return (
    <div
      className={`jp-Containers-utilizationLine jp-mod-${props.kind}`}
      data-utilization-target={props.kind === 'target' ? props.name : undefined}
      data-utilization-node={props.kind === 'node' ? props.name : undefined}
      title={props.error ?? props.title}
    >
      <span className="jp-Containers-utilizationName">{props.name}</span>
      {props.reachable && figures ? (
        <>
          <Figure label="CPU" value={figures.cpu_percent} />
          <Figure label="mem" value={figures.memory_percent} />
          {figures.gpu_percent !== null && (
            <Figure label="GPU" value={figures.gpu_percent} />
          )}
          <span className="jp-Containers-muted">
            {props.containers ?? 0} ctr
          </span>
        </>
      ) : (
        <span className="jp-Containers-muted">unreachable</span>
      )}
    </div>
  );
}

function Figure(props: { label: string; value: number | null }): JSX.Element {
  const value = props.value;
  const level =
    value === null
      ? ''
      : value >= 90
        ? 'jp-mod-high'
        : value >= 70
          ? 'jp-mod-mid'
          : '';
  return (
    <span
      className={`jp-Containers-utilizationFigure ${level}`}
      data-resource={props.label}
      data-percent={value === null ? '' : String(value)}
    >
      {props.label} {value === null ? '–' : `${Math.round(value)}%`}
      <span className="jp-Containers-utilizationBar">
        <span style={{ width: `${Math.min(100, Math.max(0, value ?? 0))}%` }} />
      </span>
    </span>
  );
}
