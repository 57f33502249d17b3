/**
 * "Add package…" on an environment: a package name and an optional version, which the server checks on
 * the index before it changes the spec file (keeping its comments and layout) and rebuilds. What users
 * reach for after `%pip install` fails in a container: the environment is where a package belongs.
 */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { IEnvironment, IPackageAdded } from './api';
import { ContainersModel } from './model';
import { field, textInput } from './form';

/**
 * The dialog's form: package and version.
 */
export class PackageDialogBody
  extends Widget
  implements Dialog.IBodyWidget<PackageDialogBody.IValue>
{
  constructor(options: PackageDialogBody.IOptions) {
    super({ node: document.createElement('form') });
    this.addClass('jp-Containers-packageDialog');
    const node = this.node as HTMLFormElement;
    node.addEventListener('submit', event => event.preventDefault());
    if (options.error) {
      const error = document.createElement('div');
      error.className = 'jp-Containers-error jp-Containers-dialogError';
      error.textContent = options.error;
      node.appendChild(error);
    }
    this._package = textInput('package', options.package ?? '', 'numpy');
    this._version = textInput(
      'version',
      options.version ?? '',
      'latest, or 1.2.3, >=1.2'
    );
    node.appendChild(field('Package', this._package));
    node.appendChild(field('Version (optional)', this._version));
    const hint = document.createElement('div');
    hint.className = 'jp-Containers-hint';
    hint.textContent = `Checked on the package index, then added to the pip list of ${options.environment.name} in ${options.environment.spec_file} (comments kept), and the environment is rebuilt.`;
    node.appendChild(hint);
    if (options.error) {
      const field = /^version\b/.test(options.error)
        ? this._version
        : this._package;
      field.classList.add('jp-mod-invalid');
      field.setAttribute('aria-invalid', 'true');
    }
  }

  getValue(): PackageDialogBody.IValue {
    return {
      package: this._package.value.trim(),
      version: this._version.value.trim()
    };
  }

  private _package: HTMLInputElement;
  private _version: HTMLInputElement;
}

export namespace PackageDialogBody {
  export interface IOptions {
    environment: IEnvironment;
    package?: string;
    version?: string;
    /** Why the server refused the last attempt (shown above the form, its field marked). */
    error?: string;
  }

  export interface IValue {
    package: string;
    version: string;
  }
}

/**
 * Ask for a package until the server accepts it (the build it started is followed by the model) or the
 * user cancels (`null`); a refusal brings the form back as filled in, with the server's reason.
 */
export async function addPackage(
  model: ContainersModel,
  environment: IEnvironment
): Promise<IPackageAdded | null> {
  let options: PackageDialogBody.IOptions = { environment };
  for (;;) {
    const result = await showDialog<PackageDialogBody.IValue>({
      title: `Add a package to ${environment.name}`,
      body: new PackageDialogBody(options),
      buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Add' })],
      focusNodeSelector: 'input[name="package"]'
    });
    if (!result.button.accept || !result.value) {
      return null;
    }
    const { package: pkg, version } = result.value;
    try {
      return await model.addPackage(environment.name, pkg, version);
    } catch (error) {
      options = {
        environment,
        package: pkg,
        version,
        error: error instanceof Error ? error.message : String(error)
      };
    }
  }
}
