/**
 * The "Containers" sidebar: engine, environments, running containers and jobs.
 */
import {
  SidePanel,
  Toolbar,
  ToolbarButton,
  refreshIcon
} from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';
import { Panel, Widget } from '@lumino/widgets';

import { containersIcon } from './icons';
import { ContainersModel } from './model';
import {
  ContainersSection,
  EngineSection,
  EnvironmentsSection,
  JobsSection
} from './widgets';
import { UtilizationSection } from './utilization';

export class ContainersPanel extends SidePanel {
  constructor(options: ContainersPanel.IOptions) {
    super({ content: new Panel() });
    this.model = options.model;
    this.id = ContainersPanel.ID;
    this.addClass('jp-Containers-panel');
    this.title.icon = containersIcon;
    this.title.caption = 'Containers';
    this.content.addClass('jp-Containers-content');

    const heading = new Widget();
    heading.addClass('jp-Containers-heading');
    heading.node.textContent = 'Containers';
    this.toolbar.addItem('title', heading);
    this.toolbar.addItem('spacer', Toolbar.createSpacerItem());
    this.toolbar.addItem(
      'refresh',
      new ToolbarButton({
        icon: refreshIcon,
        tooltip: 'Refresh the engine, environments, containers and jobs',
        onClick: () => void this.model.refresh()
      })
    );

    this.addWidget(new EngineSection(this.model));
    this.addWidget(new UtilizationSection(this.model));
    this.addWidget(
      new EnvironmentsSection(this.model, options.openFile ?? (() => undefined))
    );
    this.addWidget(
      new ContainersSection(this.model, options.notebookOf ?? (() => null))
    );
    this.addWidget(
      new JobsSection({
        model: this.model,
        openPath: options.openPath,
        runNotebook: options.runNotebook
      })
    );
  }

  readonly model: ContainersModel;

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this.model.active = true;
  }

  protected onAfterHide(msg: Message): void {
    super.onAfterHide(msg);
    this.model.active = false;
  }
}

export namespace ContainersPanel {
  /** The sidebar's widget id (stable: tests and layouts use it). */
  export const ID = 'jupyter-containers-sidebar';

  export interface IOptions {
    model: ContainersModel;
    /** Open a job's output notebook (relative to the server root) in Lab. */
    openPath: (path: string) => void;
    /** Open a file of the server root in Lab's editor ("Open spec"). */
    openFile?: (path: string) => void;
    /** Start the "Run in container…" dialog without a notebook chosen. */
    runNotebook: () => void;
    /** The path of the notebook whose kernel has this id, if one is open (Stop names it). */
    notebookOf?: (kernelId: string) => string | null;
  }
}
