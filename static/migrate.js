/* The migration wizard (templates/workflows/migrate.html). Plain JavaScript, loaded with <script src>: the
 * Content-Security-Policy runs no inline script. */
"use strict";

// Choosing a VM marks (and disables) the targets that already have a VM of its name; the server checks again.
(function () {
  const vm = document.getElementById("vm"), target = document.getElementById("target-host");
  if (!vm || !target) return;
  function mark() {
    const chosen = vm.options[vm.selectedIndex], name = chosen ? chosen.value : "";
    const taken = ((chosen && chosen.dataset.taken) || "").split(" ").filter(Boolean);
    for (const option of target.options) {
      if (!option.value) continue;
      const blocked = name !== "" && taken.includes(option.value);
      option.disabled = blocked && !option.selected;
      option.textContent = option.dataset.name + (blocked ? " — has a VM named '" + name + "'" : "");
    }
  }
  vm.addEventListener("change", mark);
  mark();
})();
