/* Small behaviours of every page. Plain JavaScript, loaded with <script src> from base.html: the
 * Content-Security-Policy runs no inline script and no on…= attribute.
 *
 * - [data-autosubmit] on a <select>: choosing a value submits its form (the workflow pages' host pickers).
 * - The top bar's "Menu" button folds the navigation open and shut on narrow screens.
 * - A user whose time zone is not set yet ([data-time-zone-unset] on <body>, the URL to send it to) has the
 *   browser's zone stored once; "My account" changes it.
 * - Copy buttons on every PowerShell block (pre.powershell) and every [data-copy] element (a download password).
 * - [data-started] (epoch ms) without [data-finished]: a running duration, counted up every second.
 * Its words go through Django's JavaScript catalogue (gettext, interpolate from /jsi18n/, deferred before it).
 */
"use strict";

(function () {
  document.addEventListener("change", function (event) {
    const field = event.target;
    if (field instanceof HTMLSelectElement && field.hasAttribute("data-autosubmit") && field.form) {
      field.form.submit();
    }
  });

  function csrfToken() {
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function menu() {
    const button = document.querySelector(".nav-toggle");
    const bar = document.querySelector(".topbar");
    if (!button || !bar) return;
    button.addEventListener("click", function () {
      const open = bar.classList.toggle("menu-open");
      button.setAttribute("aria-expanded", open ? "true" : "false");
    });
  }

  function browserTimeZone() {
    const url = document.body.dataset.timeZoneUnset;
    if (!url || !window.Intl || !window.fetch) return;
    const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (!zone) return;
    const body = new URLSearchParams({ time_zone: zone });
    fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrfToken() },
      body: body,
    }).then(function (response) {
      if (response.ok) document.body.removeAttribute("data-time-zone-unset");
    }).catch(function () {}); // tried again on the next page
  }

  function copyButton(source) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "secondary small copy-button";
    button.textContent = gettext("Copy");
    button.setAttribute("aria-label", source.dataset.copyLabel || gettext("Copy to the clipboard"));
    button.addEventListener("click", function () {
      const text = source.innerText.replace(/\n$/, "");
      const done = (word) => {
        button.textContent = word;
        setTimeout(() => { button.textContent = gettext("Copy"); }, 2000);
      };
      if (!navigator.clipboard) { done(gettext("Select and copy")); return; }
      navigator.clipboard.writeText(text).then(() => done(gettext("Copied")), () => done(gettext("Copy failed")));
    });
    const bar = document.createElement("div");
    bar.className = "copy-bar";
    bar.appendChild(button);
    source.parentNode.insertBefore(bar, source);
  }

  function copyButtons() {
    document.querySelectorAll("pre.powershell, [data-copy]").forEach(copyButton);
  }

  /* "45 s", "2 min 5 s", "1 h 3 min": as jobs.models.spoken_duration says it. */
  function spoken(ms) {
    let seconds = Math.max(0, Math.floor(ms / 1000));
    const hours = Math.floor(seconds / 3600);
    seconds -= hours * 3600;
    const minutes = Math.floor(seconds / 60);
    seconds -= minutes * 60;
    const parts = { hours: hours, minutes: minutes, seconds: seconds };
    if (hours) return interpolate(gettext("%(hours)s h %(minutes)s min"), parts, true);
    if (minutes) return interpolate(gettext("%(minutes)s min %(seconds)s s"), parts, true);
    return interpolate(gettext("%(seconds)s s"), parts, true);
  }
  window.guardianSpoken = spoken;

  function tickDurations() {
    for (const element of document.querySelectorAll("[data-started]")) {
      const started = Number(element.dataset.started);
      if (!started || element.dataset.finished) continue;
      element.textContent = spoken(Date.now() - started);
    }
  }

  function start() {
    menu();
    browserTimeZone();
    copyButtons();
    tickDurations();
    setInterval(tickDurations, 1000);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
