/* The migration wizard (templates/workflows/migrate.html). Plain JavaScript, loaded with <script src>: the
 * Content-Security-Policy runs no inline script. The page works without it: every step is a plain form. */
"use strict";

// The method step: only the chosen method's own fields are shown (the server reads only those of the method sent).
(function () {
  const methods = document.getElementById("methods");
  if (!methods) return;
  function show() {
    const chosen = methods.querySelector("input[name=method]:checked");
    for (const fields of methods.querySelectorAll("[data-fields-of]")) {
      fields.hidden = !chosen || fields.dataset.fieldsOf !== chosen.value;
    }
    const newId = document.getElementById("new-id");
    if (newId) newId.hidden = !chosen || !["export", "pull"].includes(chosen.value);
  }
  methods.addEventListener("change", show);
  show();
})();
