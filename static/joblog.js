/* The live job log and live job states. Plain JavaScript, no dependencies.
 *
 * A job page ([data-joblog]) opens /ws/jobs/<id>/?after=<last seq it has>. The server replays the gap from the
 * database, then streams; lines carry a per-job seq, so a line already shown is dropped and a gap makes the page
 * reconnect from its last seq. Only the rows in view exist in the DOM, so a 100k-line log stays responsive.
 * Lists ([data-joblist]) open /ws/jobs/ and keep every [data-job-state] badge up to date.
 * Its own words go through Django's JavaScript catalogue (gettext, ngettext, interpolate from /jsi18n/, which the
 * pages load before this script); texts the server sends (states, steps, headlines) come translated.
 */
"use strict";

(function () {
  const LEVELS = { debug: 0, verbose: 1, progress: 2, info: 3, warning: 4, error: 5 };
  // px; every row has the same height, which is what makes windowed rendering simple. The styles are in
  // console.css (.jl-row there has the same height): the Content-Security-Policy refuses injected <style>.
  const ROW_HEIGHT = 18;
  const OVERSCAN = 20;
  const WRAP_LIMIT = 5000;

  function socketUrl(path) {
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;
  }

  // Log times in the reader's time zone (chosen in "My account", on <body>), with milliseconds; UTC on hover.
  const ZONE = document.body.dataset.timeZone || "UTC";
  let clock = null;
  try {
    clock = new Intl.DateTimeFormat("en-GB", {
      timeZone: ZONE, hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
    });
  } catch (error) {
    clock = null; // an unknown zone: UTC below
  }

  function timeOf(ms) {
    if (!clock) return new Date(ms).toISOString().slice(11, 23);
    return clock.format(new Date(ms)) + "." + String(ms % 1000).padStart(3, "0");
  }

  // ANSI SGR colours → spans. Text is always set with textContent, never parsed as HTML.
  const ESCAPE = /\x1b\[([0-9;]*)([A-Za-z])/g;

  function appendAnsi(parent, text) {
    if (text.indexOf("\x1b") === -1) {
      parent.appendChild(document.createTextNode(text));
      return;
    }
    let colour = null;
    let bold = false;
    let last = 0;
    const emit = (chunk) => {
      if (!chunk) return;
      if (!colour && !bold) {
        parent.appendChild(document.createTextNode(chunk));
        return;
      }
      const span = document.createElement("span");
      span.className = (colour ? "ansi-" + colour : "") + (bold ? " ansi-b" : "");
      span.textContent = chunk;
      parent.appendChild(span);
    };
    ESCAPE.lastIndex = 0;
    let match;
    while ((match = ESCAPE.exec(text)) !== null) {
      emit(text.slice(last, match.index));
      last = ESCAPE.lastIndex;
      if (match[2] !== "m") continue; // other control sequences are dropped
      for (const code of (match[1] || "0").split(";").map(Number)) {
        if (code === 0) { colour = null; bold = false; }
        else if (code === 1) bold = true;
        else if (code === 22) bold = false;
        else if (code === 39) colour = null;
        else if ((code >= 30 && code <= 37) || (code >= 90 && code <= 97)) colour = String(code);
      }
    }
    emit(text.slice(last));
  }

  function updateBadges(message) {
    const badges = document.querySelectorAll('[data-job-state="' + message.job + '"]');
    for (const badge of badges) {
      badge.textContent = message.badge || message.state_label || message.state;
      badge.className = "badge " + message.state;
    }
    if (message.progress) showHeadline(message.job, message.progress);
    if (message.ended || message.cancel_requested) {
      // The list's per-row Cancel: nothing left to cancel (the server would only say so).
      for (const form of document.querySelectorAll('[data-job-cancel="' + message.job + '"]')) form.remove();
    }
    return badges.length;
  }

  function capitalised(text) {
    return text ? text.charAt(0).toUpperCase() + text.slice(1) : "";
  }

  /* The list's "step 3 of 7: …" under a running job's badge (nothing once it ended). */
  function showHeadline(job, progress) {
    for (const element of document.querySelectorAll('[data-job-progress="' + job + '"]')) {
      element.textContent = capitalised(progress.headline || "");
    }
  }

  /* The job page's list of steps, redrawn from a progress message (text only, never HTML). */
  function showSteps(progress) {
    const list = document.getElementById("job-steps");
    if (!list || !progress.steps) return;
    const items = progress.steps.map((step) => {
      const item = document.createElement("li");
      item.className = "step step-" + step.state;
      if (step.state === "running") item.setAttribute("aria-current", "step");
      const title = document.createElement("span");
      title.className = "step-title";
      title.textContent = step.title;
      item.appendChild(title);
      if (step.of) {
        const of = document.createElement("span");
        of.className = "step-of";
        of.textContent = step.of;
        item.append(" ", of);
      }
      const state = document.createElement("span");
      state.className = "step-state";
      state.textContent = step.words;
      if (step.started && step.finished) state.textContent += " · " + window.guardianSpoken(step.finished - step.started);
      else if (step.started && step.state === "running") {
        const running = document.createElement("span");
        running.dataset.started = step.started;
        running.textContent = window.guardianSpoken(Date.now() - step.started);
        state.append(" · ", running);
      }
      item.append(" ", state);
      return item;
    });
    if (items.length) list.replaceChildren(...items);
    const count = document.getElementById("job-progress-count");
    if (count) {
      count.textContent = interpolate(gettext("%(done)s of %(total)s done"), { done: progress.done, total: progress.total }, true);
    }
    const headline = document.getElementById("job-headline");
    if (headline) {
      headline.textContent = capitalised(progress.headline || "");
      headline.hidden = !progress.headline;
    }
  }

  // Close codes the server sends after accepting: retrying cannot help, so the page says why and stops.
  // A function: the words are looked up when needed, in the catalogue loaded by then.
  function refusal(code) {
    if (code === 4403) return gettext("not allowed — log in again"); // the session expired or the role was taken away
    if (code === 4404) return gettext("job not found");
    return null;
  }

  /* A websocket that reconnects with backoff until `done()` says it should stop or the server refuses it. */
  function reconnecting(pathFn, handlers) {
    let retries = 0;
    let socket = null;
    const self = {
      refused: null, // the close code that stopped the retries, if any
      open() {
        const ws = new WebSocket(socketUrl(pathFn()));
        socket = ws;
        ws.onopen = () => { retries = 0; handlers.status && handlers.status(gettext("live")); };
        ws.onmessage = (event) => handlers.message(JSON.parse(event.data));
        ws.onclose = (event) => {
          if (socket !== ws) return; // replaced on purpose
          socket = null;
          if (handlers.done && handlers.done()) return;
          if (refusal(event.code)) {
            self.refused = event.code;
            handlers.status && handlers.status(refusal(event.code));
            return;
          }
          const delay = Math.min(5000, 250 * Math.pow(2, retries++));
          handlers.status && handlers.status(gettext("reconnecting…"));
          setTimeout(() => self.open(), delay);
        };
      },
      restart() {
        const old = socket;
        socket = null;
        if (old) old.close();
        self.open();
      },
      close() {
        const old = socket;
        socket = null;
        if (old) old.close();
      },
      get socket() { return socket; },
    };
    return self;
  }

  class JobLog {
    constructor(root) {
      this.root = root;
      this.jobId = root.dataset.joblog;
      this.state = root.dataset.state;
      this.endedWhenRendered = root.dataset.ended === "true"; // the server says which states are final
      this.cardRefreshed = false;
      this.cardRefreshes = 0;
      // Parallel arrays rather than one object per line: 100k lines stay small in memory.
      this.seqs = [];
      this.times = [];
      this.levels = [];
      this.texts = [];
      this.links = []; // a line's remedy page on this console (its 5th field), "" for most lines
      this.visible = []; // indexes of lines passing the level filter
      this.lastSeq = 0;
      this.duplicates = 0;
      this.gaps = 0;
      this.connects = 0;
      this.ended = false;
      this.endSeq = null;
      this.minLevel = 0;
      this.pending = false;
      this.view = root.querySelector(".jl-view");
      this.spacer = root.querySelector(".jl-spacer");
      this.rows = root.querySelector(".jl-rows");
      this.follow = root.querySelector(".jl-follow");
      this.times_ = root.querySelector(".jl-times");
      this.wrap = root.querySelector(".jl-wrap");
      this.level = root.querySelector(".jl-level");
      this.statusEl = root.querySelector(".jl-status");
      this.countEl = root.querySelector(".jl-count");
      this.bindControls();
      this.socket = reconnecting(() => "/ws/jobs/" + this.jobId + "/?after=" + this.lastSeq, {
        message: (m) => this.onMessage(m),
        status: (s) => this.setStatus(s),
        done: () => this.ended,
      });
      const open = this.socket.open;
      this.socket.open = () => { this.connects++; open(); };
      this.socket.open();
    }

    bindControls() {
      this.follow.addEventListener("change", () => this.follow.checked && this.scheduleRender());
      this.times_.addEventListener("change", () => this.root.classList.toggle("jl-hide-times", !this.times_.checked));
      // Wrapped lines have no fixed height: the newest WRAP_LIMIT lines are drawn in full instead of a window.
      this.wrap.addEventListener("change", () => {
        this.root.classList.toggle("jl-wrapped", this.wrap.checked);
        this.scheduleRender();
      });
      this.level.addEventListener("change", () => this.applyFilter());
      this.view.addEventListener("scroll", () => this.scheduleRender(), { passive: true });
      // Reading back up the log stops following; only a person scrolls with wheel or keys.
      this.view.addEventListener("wheel", (e) => { if (e.deltaY < 0) this.follow.checked = false; }, { passive: true });
      this.view.addEventListener("keydown", (e) => {
        if (["ArrowUp", "PageUp", "Home"].includes(e.key)) this.follow.checked = false;
      });
    }

    setStatus(text) {
      this.statusEl.textContent = this.ended ? gettext("complete") : text;
    }

    onMessage(m) {
      if (m.type === "lines") this.addLines(m.lines);
      else if (m.type === "progress") showSteps(m);
      else if (m.type === "state") this.showState(m);
      else if (m.type === "end") {
        this.ended = true;
        this.endSeq = m.seq;
        this.setStatus(gettext("complete"));
        this.socket.close();
      }
    }

    addLines(lines) {
      for (const line of lines) {
        const seq = line[0];
        if (seq <= this.lastSeq) { this.duplicates++; continue; }
        if (seq !== this.lastSeq + 1) {
          // Should not happen (the server fills gaps); if it does, ask again from what we have.
          this.gaps++;
          this.socket.restart();
          break;
        }
        const index = this.seqs.length;
        this.seqs.push(seq);
        this.times.push(line[1]);
        this.levels.push(line[2]);
        this.texts.push(line[3]);
        this.links.push(typeof line[4] === "string" && /^\/(?![\/\\])/.test(line[4]) ? line[4] : "");
        this.lastSeq = seq;
        if ((LEVELS[line[2]] ?? 3) >= this.minLevel) this.visible.push(index);
      }
      this.scheduleRender();
    }

    showState(m) {
      this.state = m.state;
      updateBadges(m);
      const summary = document.getElementById("job-summary");
      const error = document.getElementById("job-error");
      if (summary) { summary.textContent = m.summary || ""; summary.hidden = !m.summary; }
      const ran = document.getElementById("job-ran");
      if (ran) {
        if (m.started) ran.dataset.started = m.started;
        if (m.finished) ran.dataset.finished = m.finished;
        if (m.ran) ran.textContent = m.ran;
      }
      if (m.progress) showSteps(m.progress);
      if (error) { error.textContent = m.error || ""; error.hidden = !m.error; }
      if (m.ended) {
        const cancel = document.getElementById("cancel-form");
        if (cancel) cancel.remove();
        const silent = document.getElementById("job-silent");
        if (silent) silent.remove();
        // The page was rendered while the job ran: fetch its card again for the results, the next action and
        // "Run again", which the server renders (permissions, CSRF token, links) — once, no reload needed.
        if (!this.cardRefreshed && !this.endedWhenRendered) {
          this.cardRefreshed = true;
          this.refreshCard();
        }
      }
    }

    refreshCard() {
      fetch(location.pathname, { credentials: "same-origin" })
        .then((response) => (response.ok ? response.text() : null))
        .then((html) => {
          if (!html) return;
          const fresh = new DOMParser().parseFromString(html, "text/html").getElementById("job-card");
          const card = document.getElementById("job-card");
          if (fresh && card) card.replaceWith(document.importNode(fresh, true));
          this.cardRefreshes++;
        })
        .catch(() => {}); // the card keeps what it showed; a reload shows the rest
    }

    applyFilter() {
      this.minLevel = LEVELS[this.level.value] ?? 0;
      this.visible = [];
      for (let i = 0; i < this.levels.length; i++) {
        if ((LEVELS[this.levels[i]] ?? 3) >= this.minLevel) this.visible.push(i);
      }
      this.scheduleRender();
    }

    scheduleRender() {
      if (this.pending) return;
      this.pending = true;
      requestAnimationFrame(() => { this.pending = false; this.render(); });
    }

    render() {
      if (this.wrap.checked) return this.renderWrapped();
      const total = this.visible.length;
      this.spacer.style.height = total * ROW_HEIGHT + "px";
      if (this.follow.checked) this.view.scrollTop = this.view.scrollHeight;
      const first = Math.max(0, Math.floor(this.view.scrollTop / ROW_HEIGHT) - OVERSCAN);
      const last = Math.min(total, first + Math.ceil(this.view.clientHeight / ROW_HEIGHT) + 2 * OVERSCAN);
      this.rows.style.transform = "translateY(" + first * ROW_HEIGHT + "px)";
      const fragment = document.createDocumentFragment();
      for (let v = first; v < last; v++) fragment.appendChild(this.row(this.visible[v]));
      this.rows.replaceChildren(fragment);
      this.countEl.textContent = this.linesCounted() + (total !== this.seqs.length
        ? " " + interpolate(gettext("(%(shown)s shown)"), { shown: total }, true) : "");
    }

    renderWrapped() {
      const total = this.visible.length;
      const first = Math.max(0, total - WRAP_LIMIT);
      this.spacer.style.height = "auto";
      this.rows.style.transform = "none";
      const fragment = document.createDocumentFragment();
      for (let v = first; v < total; v++) fragment.appendChild(this.row(this.visible[v]));
      this.rows.replaceChildren(fragment);
      if (this.follow.checked) this.view.scrollTop = this.view.scrollHeight;
      const shown = first
        ? " " + interpolate(gettext("(the last %(limit)s shown wrapped; the download has all)"), { limit: WRAP_LIMIT }, true)
        : "";
      this.countEl.textContent = this.linesCounted() + shown;
    }

    linesCounted() {
      const count = this.seqs.length;
      return interpolate(ngettext("%(count)s line", "%(count)s lines", count), { count: count }, true);
    }

    row(index) {
      const div = document.createElement("div");
      div.className = "jl-row jl-lvl-" + this.levels[index];
      div.dataset.seq = this.seqs[index];
      const time = document.createElement("span");
      time.className = "jl-time";
      time.textContent = timeOf(this.times[index]);
      time.title = new Date(this.times[index]).toISOString().replace("T", " ").slice(0, 23) + " UTC";
      div.appendChild(time);
      appendAnsi(div, this.texts[index]);
      if (this.links[index]) {
        const link = document.createElement("a");
        link.className = "jl-link";
        link.href = this.links[index];
        link.textContent = gettext("Open the fix");
        div.appendChild(document.createTextNode(" "));
        div.appendChild(link);
      }
      return div;
    }

    // For people debugging and for the browser tests: what the page holds.
    snapshot() {
      return {
        count: this.seqs.length, lastSeq: this.lastSeq, firstSeq: this.seqs[0] ?? null, duplicates: this.duplicates,
        gaps: this.gaps, ended: this.ended, endSeq: this.endSeq, state: this.state, connects: this.connects,
        cardRefreshes: this.cardRefreshes, refused: this.socket.refused,
        contiguous: this.seqs.every((seq, i) => seq === i + 1),
      };
    }
  }

  /* A list of jobs: badges and progress follow every job; a job the list does not show yet (a new one) makes the
   * first page of /jobs/ fetch itself again and swap its rows, the server rendering them (links, permissions,
   * filters); other lists (a later page, the dashboard) say "New jobs started". */
  function liveList(root) {
    const notice = root.querySelector(".jobs-new");
    let fetching = null;
    let again = false;
    const live = { refreshes: 0 };
    root.guardianList = live;

    function refreshRows() {
      if (fetching) { again = true; return; }
      fetching = fetch(location.href, { credentials: "same-origin" })
        .then((response) => (response.ok ? response.text() : null))
        .then((html) => {
          if (!html) return;
          const fresh = new DOMParser().parseFromString(html, "text/html").querySelector("#job-list tbody");
          const rows = root.querySelector("#job-list tbody");
          if (fresh && rows) rows.replaceWith(document.importNode(fresh, true));
          live.refreshes++;
        })
        .catch(() => { if (notice) notice.hidden = false; })
        .finally(() => {
          fetching = null;
          if (again) { again = false; refreshRows(); }
        });
    }

    const socket = reconnecting(() => "/ws/jobs/", {
      message: (m) => {
        if (m.type === "progress") { showHeadline(m.job, m); return; }
        if (m.type !== "state") return;
        const refreshes = root.hasAttribute("data-joblist-refresh");
        // A job that ended gets its result and duration, rendered by the server like the rest of the row.
        if (updateBadges(m) > 0) { if (m.ended && refreshes) refreshRows(); return; }
        if (refreshes) refreshRows();
        else if (notice) notice.hidden = false;
      },
    });
    socket.open();
  }

  function start() {
    if (window.guardianJobsStarted) return; // the script may be included by a page and by a partial
    window.guardianJobsStarted = true;
    const log = document.querySelector("[data-joblog]");
    if (log) window.guardianJobLog = new JobLog(log);
    const lists = document.querySelectorAll("[data-joblist]");
    if (lists.length) lists.forEach(liveList);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
