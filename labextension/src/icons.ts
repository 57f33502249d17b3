import { LabIcon } from '@jupyterlab/ui-components';

/** A stack of boxes: the sidebar tab and the "Run in container…" command. */
const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <path d="M21 7.5 12 2.3 3 7.5v9l9 5.2 9-5.2v-9zM12 4.6l6.4 3.7L12 12 5.6 8.3 12 4.6zM5 10l6 3.5v6.3l-6-3.5V10zm8 9.8v-6.3l6-3.5v6.3l-6 3.5z"/>
  </g>
</svg>`;

export const containersIcon = new LabIcon({
  name: 'jupyter-containers:containers',
  svgstr: svg
});
