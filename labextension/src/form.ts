/**
 * The form controls the run dialog and the Add package dialog share, styled as Lab's own.
 */

/** A text input named `name` (the dialogs read their values by name), with an optional placeholder. */
export function textInput(
  name: string,
  value: string,
  placeholder = ''
): HTMLInputElement {
  const input = document.createElement('input');
  input.type = 'text';
  input.name = name;
  input.value = value;
  if (placeholder) {
    input.placeholder = placeholder;
  }
  input.className = 'jp-mod-styled';
  return input;
}

/** A labelled row holding `control`. */
export function field(label: string, control: HTMLElement): HTMLLabelElement {
  const node = document.createElement('label');
  node.className = 'jp-Containers-field';
  const text = document.createElement('span');
  text.textContent = label;
  node.appendChild(text);
  node.appendChild(control);
  return node;
}
