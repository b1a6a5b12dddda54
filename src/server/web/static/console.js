// The console's one script, served by the dashboard at /static/console.js (no inline script: the
// pages' Content-Security-Policy allows scripts from the dashboard only). It adds two things to
// pages that work without it:
//
// - the command page follows its command while it is queued or running: it listens to the
//   command's event stream (GET /api/v1/commands/{id}/events), shows output chunks as they come,
//   and re-reads the page's detail from the dashboard on every status change; where the stream is
//   not available it polls GET /api/v1/commands/{id} about once a second instead;
// - a part marked data-refresh-secs (the agents table) is re-read from the dashboard every so
//   often.
//
// Once the session has ended (a page comes back as the login form, the API answers 401) both stop
// and the page says so. Under the dashboard's rate limit (429) both wait as long as its Retry-After
// asks (1 to 60 s) before asking again: the dashboard is there, so the page is not shown as broken.
//
// Everything it shows is set as text or taken from the dashboard's own rendered page.
"use strict";

(() => {
  /** Characters of live output a page keeps per stream. */
  const LIVE_TEXT_MAX = 100_000;
  /** Least ms between two renders of live output (one per chunk of a flood froze the page). */
  const LIVE_RENDER_MS = 250;
  /** Terminal control sequences, left out of the page as the dashboard does (format.ts). */
  const TERMINAL_SEQUENCE =
    // deno-lint-ignore no-control-regex -- the escape character is what it finds
    /\x1b(?:\[[0-?]*[ -\/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[()*+][ -~]|[78=>DEHMNOZc])/g;
  /** Bidirectional overrides and isolates, shown as escapes as the dashboard does (format.ts). */
  const BIDI_OVERRIDE = /[\u202a-\u202e\u2066-\u2069]/g;

  /** Least ms the page waits after a 429, whatever its Retry-After says. */
  const BUSY_MIN_MS = 1_000;
  /** Most ms the page waits after a 429 (the dashboard's limits are per minute). */
  const BUSY_MAX_MS = 60_000;
  /** What the page waits after a 429 without a Retry-After it can read. */
  const BUSY_DEFAULT_MS = 10_000;

  /**
   * How long a 429 asks the page to wait, in ms: its Retry-After (seconds, or an HTTP date), held
   * to BUSY_MIN_MS–BUSY_MAX_MS.
   */
  function retryAfterMs(response) {
    const value = (response.headers.get("Retry-After") || "").trim();
    let ms = /^\d+$/.test(value) ? Number(value) * 1000 : Date.parse(value) - Date.now();
    if (!Number.isFinite(ms)) ms = BUSY_DEFAULT_MS;
    return Math.min(BUSY_MAX_MS, Math.max(BUSY_MIN_MS, ms));
  }

  /** A 429 of the dashboard's rate limit: it is there, and asks the page to wait `ms`. */
  class Busy extends Error {
    constructor(ms) {
      super("the dashboard asks to wait " + ms + " ms");
      this.ms = ms;
    }
  }

  /** Set once the session has ended: nothing on the page updates any more. */
  let sessionOver = false;

  /**
   * The session ended (logged out in another tab, or expired): says so once, with a link to log
   * in again, instead of leaving the page looking live while it no longer changes.
   */
  function endSession() {
    if (sessionOver) return;
    sessionOver = true;
    const main = document.getElementById("main");
    if (!main) return;
    const notice = document.createElement("p");
    notice.className = "notice error";
    notice.setAttribute("role", "alert");
    notice.id = "session-ended";
    const link = document.createElement("a");
    link.href = "/login?" + new URLSearchParams({ next: location.pathname + location.search });
    link.textContent = "Log in again";
    notice.append("Your session has ended, so this page no longer updates. ", link, ".");
    const title = main.querySelector("h1");
    if (title) title.after(notice);
    else main.prepend(notice);
  }

  /**
   * Says, while the dashboard cannot be reached (down, restarting, or answering 5xx), that the page
   * shows what it last had, instead of showing it as live; removed once an answer comes again.
   */
  function reachable(yes) {
    const notice = document.getElementById("dashboard-unreachable");
    if (yes || sessionOver) {
      if (notice) notice.remove();
      return;
    }
    const main = document.getElementById("main");
    if (notice || !main) return;
    const p = document.createElement("p");
    p.className = "notice error";
    p.setAttribute("role", "status");
    p.id = "dashboard-unreachable";
    p.textContent = "The dashboard cannot be reached: this page shows what it last had, and " +
      "tries again.";
    const title = main.querySelector("h1");
    if (title) title.after(p);
    else main.prepend(p);
  }

  /**
   * Fetches this page again and returns the fresh element with the given id, or null; throws Busy
   * for a 429, and another error when the dashboard cannot be reached or fails (5xx).
   */
  async function freshPart(id) {
    const response = await fetch(location.pathname + location.search, {
      credentials: "same-origin",
      cache: "no-store",
      headers: { Accept: "text/html" },
    });
    if (response.status === 429) {
      reachable(true);
      throw new Busy(retryAfterMs(response));
    }
    if (response.status >= 500) throw new Error(`the dashboard answered ${response.status}`);
    reachable(true);
    if (response.redirected && new URL(response.url).pathname === "/login") endSession();
    if (!response.ok || response.redirected) return null;
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    return doc.getElementById(id);
  }

  /** The controls of a part that take the keyboard focus, in order. */
  function focusables(root) {
    return [...root.querySelectorAll("a[href], button, input, select, textarea, [tabindex]")];
  }

  /**
   * Replaces the element with the same id as `fresh`, keeping the keyboard focus where it was: on
   * the element of the same id, else on the link to the same place (the agents table's links have
   * no id), else on the control at the same place.
   */
  function swap(fresh) {
    const current = document.getElementById(fresh.id);
    if (!current) return;
    const active = document.activeElement;
    const inside = active && active !== current && current.contains(active);
    const focused = active && active.id;
    const href = inside ? active.getAttribute("href") : null;
    const at = inside ? focusables(current).indexOf(active) : -1;
    current.replaceWith(document.adoptNode(fresh));
    let again = focused ? document.getElementById(focused) : null;
    if (!again && at >= 0) {
      const controls = focusables(fresh);
      again = (href && controls.find((el) => el.getAttribute("href") === href)) || controls[at];
    }
    if (again && again !== document.activeElement) again.focus({ preventScroll: true });
  }

  function followCommand(detail) {
    const id = detail.dataset.commandId;
    const api = "/api/v1/commands/" + encodeURIComponent(id);
    const newStream = () => ({ bytes: 0, text: "", decoder: new TextDecoder() });
    const live = { attempt: 1, stdout: newStream(), stderr: newStream() };
    let stopped = false;
    let source = null;
    let opened = false;
    /** Stream errors since it was last open: the first is the break, the next a failed reconnect. */
    let failures = 0;
    let pollTimer = 0;
    let lastKey = null;
    let refreshing = false;
    let again = false;
    /** Set while the dashboard asked to wait (a 429): the refresh it holds back comes then. */
    let busyTimer = 0;
    let renderTimer = 0;
    let renderedAt = -Infinity;

    function stop() {
      stopped = true;
      if (source) source.close();
      clearTimeout(pollTimer);
      clearTimeout(renderTimer);
    }

    /** Shows the live output now, or once LIVE_RENDER_MS have passed since it was last shown. */
    function scheduleLive() {
      if (renderTimer) return;
      const render = () => {
        renderTimer = 0;
        renderedAt = performance.now();
        showLive();
      };
      const wait = renderedAt + LIVE_RENDER_MS - performance.now();
      if (wait <= 0) render();
      else renderTimer = setTimeout(render, wait);
    }

    /** Shows the live output received so far while the page has no final output. */
    function showLive() {
      const current = document.getElementById("command-detail");
      if (!current || current.dataset.final === "true") return;
      for (const stream of ["stdout", "stderr"]) {
        const pre = document.getElementById(stream);
        // NUL bytes (which a page drops without a trace) and overrides as the dashboard shows them.
        const text = live[stream].text.replace(TERMINAL_SEQUENCE, "").replaceAll("\0", "\u2400")
          .replace(BIDI_OVERRIDE, (c) => "\\u" + c.charCodeAt(0).toString(16));
        if (pre && text && pre.textContent !== text) pre.textContent = text;
      }
      if (live.stdout.text || live.stderr.text) {
        const hint = document.getElementById("output-hint");
        if (hint) hint.textContent = "Live output so far:";
      }
    }

    async function refresh() {
      // Asked to wait: the refresh already due then shows what changed meanwhile.
      if (busyTimer) return;
      if (refreshing) {
        again = true;
        return;
      }
      refreshing = true;
      try {
        do {
          again = false;
          const fresh = await freshPart("command-detail");
          if (!fresh) {
            if (sessionOver) stop();
            break;
          }
          const before = document.getElementById("command-detail");
          const changed = !before || before.dataset.status !== fresh.dataset.status;
          swap(fresh);
          // The live region stays in place (outside the swapped part), so the change is announced.
          const announce = document.getElementById("live-status");
          if (announce && changed) announce.textContent = "Status: " + fresh.dataset.status;
          if (fresh.dataset.final === "true") stop();
          else showLive();
        } while (again);
      } catch (error) {
        if (error instanceof Busy) {
          // Not cleared by stop(): after the stream's end, the final page still has to come.
          busyTimer = setTimeout(() => {
            busyTimer = 0;
            if (!sessionOver) refresh();
          }, error.ms);
        } else {
          // the next event or poll tries again
          reachable(false);
        }
      } finally {
        refreshing = false;
      }
    }

    function onOutput(chunk) {
      if (chunk.stream !== "stdout" && chunk.stream !== "stderr") return;
      if (typeof chunk.data !== "string") return;
      // Each delivery attempt's output starts again at offset 0: a later attempt's replaces what
      // was shown, an earlier attempt's (a chunk its agent sent late) is not shown.
      const attempt = Number.isInteger(chunk.attempt) ? chunk.attempt : live.attempt;
      if (attempt < live.attempt) return;
      if (attempt > live.attempt) {
        live.attempt = attempt;
        for (const name of ["stdout", "stderr"]) {
          live[name] = newStream();
          const pre = document.getElementById(name);
          if (pre) pre.textContent = "";
        }
      }
      const stream = live[chunk.stream];
      let bytes = Uint8Array.from(atob(chunk.data), (c) => c.charCodeAt(0));
      const offset = Number(chunk.offset);
      if (Number.isFinite(offset) && offset < stream.bytes) {
        // Already shown (a chunk sent again after a reconnect): only the new part.
        bytes = bytes.subarray(Math.min(bytes.length, stream.bytes - offset));
      } else if (Number.isFinite(offset) && offset > stream.bytes) {
        // Output this page never received (it opened late, or the dashboard dropped some).
        stream.text += stream.decoder.decode() +
          "[… " + (offset - stream.bytes) + " bytes not received here …]\n";
        stream.bytes = offset;
      }
      if (bytes.length === 0) return;
      stream.bytes += bytes.length;
      stream.text += stream.decoder.decode(bytes, { stream: true });
      if (stream.text.length > LIVE_TEXT_MAX) {
        // The page keeps the newest live output; the final result shows what the agent kept.
        stream.text = "[… earlier live output dropped here …]\n" +
          stream.text.slice(stream.text.length - LIVE_TEXT_MAX / 2);
      }
      scheduleLive();
    }

    function poll() {
      if (stopped) return;
      let next = 1000;
      fetch(api, { credentials: "same-origin", cache: "no-store" })
        .then((response) => {
          if (response.status === 429) {
            // The dashboard is there but asks to wait: the next poll comes when it said.
            next = retryAfterMs(response);
            reachable(true);
            return null;
          }
          reachable(response.status < 500);
          if (response.status === 401) endSession();
          return response.ok ? response.json() : null;
        })
        .then((command) => {
          if (!command) return;
          const key = [
            command.status,
            command.attempt,
            command.cancel_requested,
            command.delivered_at,
            command.acked_at,
            command.started_at,
          ].join("|");
          if (key !== lastKey) {
            lastKey = key;
            return refresh();
          }
        })
        .catch(() => reachable(false))
        .finally(() => {
          if (sessionOver) stop();
          if (!stopped) pollTimer = setTimeout(poll, next);
        });
    }

    function listen() {
      if (typeof EventSource !== "function") return poll();
      source = new EventSource(api + "/events");
      source.addEventListener("open", () => {
        failures = 0;
        reachable(true);
        // After a reconnect, catch up with what changed meanwhile.
        if (opened) refresh();
        opened = true;
      });
      source.addEventListener("status", () => refresh());
      source.addEventListener("output", (event) => {
        try {
          onOutput(JSON.parse(event.data));
        } catch {
          // a chunk that is not JSON is skipped
        }
      });
      source.addEventListener("end", () => {
        stop();
        refresh();
      });
      source.addEventListener("error", () => {
        if (stopped) return;
        // A reconnect that failed too: the dashboard went away (or restarts) for now.
        if (opened && source.readyState === EventSource.CONNECTING && ++failures > 1) {
          reachable(false);
        }
        // Never opened (no such endpoint: 404), or closed for good: poll instead. Otherwise the
        // browser reconnects by itself and resumes with Last-Event-ID.
        if (!opened || source.readyState === EventSource.CLOSED) {
          source.close();
          source = null;
          poll();
        }
      });
    }

    listen();
  }

  /** The part's refresh interval in ms as the page now has it, or 0 once it asks for none. */
  function refreshMs(id) {
    const current = document.getElementById(id);
    const secs = current ? Number(current.dataset.refreshSecs) : 0;
    return secs > 0 ? secs * 1000 : 0;
  }

  /** Refreshes a part while it asks for it: a part swapped in without the attribute (a run that ended) stops. */
  function refreshEvery(part) {
    const id = part.id;
    const tick = async () => {
      let busyMs = 0;
      try {
        const fresh = await freshPart(id);
        if (fresh) swap(fresh);
      } catch (error) {
        // A 429: the next tick comes when the dashboard said; else try again at the next tick.
        if (error instanceof Busy) busyMs = error.ms;
        else reachable(false);
      }
      const next = refreshMs(id);
      if (next > 0 && !sessionOver) setTimeout(tick, Math.max(next, busyMs));
    };
    const first = refreshMs(id);
    if (first > 0) setTimeout(tick, first);
  }

  function start() {
    const detail = document.getElementById("command-detail");
    if (detail && detail.dataset.final === "false") followCommand(detail);
    for (const part of document.querySelectorAll("[data-refresh-secs][id]")) refreshEvery(part);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
