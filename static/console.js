/* Small behaviours of every page. Plain JavaScript, loaded with <script src> from base.html: the
 * Content-Security-Policy runs no inline script and no on…= attribute.
 *
 * [data-autosubmit] on a <select>: choosing a value submits its form (the workflow pages' host pickers), as the
 * inline onchange="this.form.submit()" it replaces did.
 */
"use strict";

document.addEventListener("change", function (event) {
  const field = event.target;
  if (field instanceof HTMLSelectElement && field.hasAttribute("data-autosubmit") && field.form) {
    field.form.submit();
  }
});
