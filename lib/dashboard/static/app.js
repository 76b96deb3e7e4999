// The celeriac dashboard page. Every value that comes from a task or a worker is put into
// the page as text (textContent / text nodes), never as HTML: task arguments are untrusted.

const csrf = document.querySelector('meta[name="csrf-token"]').content;
const view = document.getElementById("view");

const store = {
  overview: null,
  workers: new Map(),
  tasks: new Map(),
  queues: null,
  connected: false,
};
const MAX_TASKS = 5000;

// --- DOM helpers: children are nodes or strings (text nodes), attributes are set as such.
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "class") node.className = v;
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function badge(text) {
  return el("span", { class: "badge " + text, "data-state": text }, text);
}

function ago(ms) {
  if (!ms) return "—";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return s + " s ago";
  if (s < 3600) return Math.floor(s / 60) + " min ago";
  return Math.floor(s / 3600) + " h ago";
}

function time(ms) {
  if (!ms) return "—";
  return new Date(ms).toLocaleString();
}

function dash(v) {
  return v === null || v === undefined || v === "" ? "—" : v;
}

function table(headers, rows, empty) {
  const head = el("tr", {}, headers.map((h) => el("th", { class: h.num ? "num" : "" }, h.label)));
  const body = rows.length
    ? rows
    : [el("tr", {}, el("td", { colspan: headers.length, class: "empty" }, empty ?? "Nothing yet"))];
  return el("table", {}, el("thead", {}, head), el("tbody", {}, body));
}

function toast(text) {
  const t = document.getElementById("toast");
  t.textContent = text;
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (t.hidden = true), 4000);
}

function confirmBox(text) {
  const modal = document.getElementById("modal");
  document.getElementById("modal-text").textContent = text;
  modal.hidden = false;
  return new Promise((resolve) => {
    const done = (answer) => {
      modal.hidden = true;
      ok.removeEventListener("click", yes);
      cancel.removeEventListener("click", no);
      resolve(answer);
    };
    const ok = document.getElementById("modal-ok");
    const cancel = document.getElementById("modal-cancel");
    const yes = () => done(true);
    const no = () => done(false);
    ok.addEventListener("click", yes);
    cancel.addEventListener("click", no);
  });
}

async function api(path) {
  const res = await fetch(path, { headers: { accept: "application/json" } });
  if (!res.ok) throw new Error((await res.json().catch(() => ({}))).error ?? res.statusText);
  return res.json();
}

async function post(path, body, question) {
  if (question && !(await confirmBox(question))) return null;
  const res = await fetch(path, {
    method: "POST",
    headers: { "content-type": "application/json", "x-csrf-token": csrf },
    body: JSON.stringify(body ?? {}),
  });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) {
    toast("Failed: " + (data.error ?? res.statusText));
    return null;
  }
  const replies = (data.replies ?? []).map((r) => {
    const [host, reply] = Object.entries(r)[0] ?? ["?", {}];
    return host + ": " + (reply?.ok ?? reply?.error ?? JSON.stringify(reply));
  });
  toast(replies.length ? replies.join("; ") : (data.note ?? "Done"));
  return data;
}

// --- live updates
function connect() {
  const source = new EventSource("/api/stream");
  const live = document.getElementById("live");
  source.addEventListener("open", () => {
    store.connected = true;
    live.textContent = "live";
    live.className = "live on";
  });
  source.addEventListener("error", () => {
    store.connected = false;
    live.textContent = "reconnecting";
    live.className = "live off";
  });
  source.addEventListener("snapshot", (e) => {
    const data = JSON.parse(e.data);
    store.overview = data.overview;
    store.workers = new Map(data.workers.map((w) => [w.hostname, w]));
    store.tasks = new Map(data.tasks.reverse().map((t) => [t.uuid, t]));
    banner();
    render();
  });
  source.addEventListener("update", (e) => {
    const data = JSON.parse(e.data);
    for (const w of data.workers) store.workers.set(w.hostname, w);
    for (const t of data.tasks) {
      store.tasks.delete(t.uuid);
      store.tasks.set(t.uuid, t);
    }
    while (store.tasks.size > MAX_TASKS) store.tasks.delete(store.tasks.keys().next().value);
    render();
  });
  source.addEventListener("queues", (e) => {
    store.queues = JSON.parse(e.data);
    if (route().page === "queues") render();
  });
}

function banner() {
  const b = document.getElementById("banner");
  const o = store.overview;
  const notes = [];
  if (o?.control === "commands") {
    notes.push(
      "Remote control replies are not supported on this broker (" + o.broker +
        "): pool, queues and registered tasks of workers are unknown; commands are sent without confirmation.",
    );
  } else if (o?.control === "none") {
    notes.push("Remote control is not supported on this broker.");
  }
  if (o?.events) notes.push("Events: " + o.events);
  b.textContent = notes.join(" ");
  b.hidden = notes.length === 0;
}

// --- routing
function route() {
  const [, page = "workers", ...rest] = location.hash.split("/");
  return { page: page || "workers", arg: rest.length ? decodeURIComponent(rest.join("/")) : null };
}

let frame = 0;
function render() {
  if (frame) return;
  frame = requestAnimationFrame(() => {
    frame = 0;
    const r = route();
    const page = PAGES[r.page] ?? PAGES.workers;
    page.update?.(r.arg);
  });
}

let current = null;
function navigate() {
  const r = route();
  for (const a of document.querySelectorAll("nav a")) {
    const on = a.dataset.nav === r.page || (a.dataset.nav === "tasks" && r.page === "task") ||
      (a.dataset.nav === "workers" && r.page === "worker") ||
      (a.dataset.nav === "queues" && r.page === "queue");
    a.classList.toggle("active", on);
  }
  current?.leave?.();
  current = PAGES[r.page] ?? PAGES.workers;
  view.replaceChildren();
  current.enter(r.arg);
  current.update?.(r.arg);
}

// --- Workers
const workersPage = {
  enter() {
    this.body = el("div");
    view.append(el("h1", {}, "Workers"), this.body);
    this.timer = setInterval(() => this.update(), 1000);
  },
  leave() {
    clearInterval(this.timer);
  },
  update() {
    const rows = [...store.workers.values()].sort((a, b) => a.hostname.localeCompare(b.hostname))
      .map((w) =>
        el(
          "tr",
          { "data-worker": w.hostname },
          el("td", {}, el("a", { href: "#/worker/" + encodeURIComponent(w.hostname) }, w.hostname)),
          el("td", {}, badge(w.online ? "online" : "offline")),
          el("td", {}, ago(w.lastHeartbeat)),
          el("td", {}, w.pool ? w.pool + (w.concurrency ? " × " + w.concurrency : "") : "—"),
          el("td", { class: "num" }, w.active),
          el("td", { class: "num" }, w.processed),
          el("td", { class: "num" }, w.succeeded),
          el("td", { class: "num" }, w.failed),
          el("td", { class: "num" }, w.retried),
          el("td", {}, w.loadavg.length ? w.loadavg.join(", ") : "—"),
          el("td", { class: "wrap" }, w.queues ? w.queues.join(", ") : "—"),
          el("td", {}, w.software || "—"),
        )
      );
    this.body.replaceChildren(table(
      [
        { label: "Worker" },
        { label: "Status" },
        { label: "Heartbeat" },
        { label: "Pool" },
        { label: "Active", num: true },
        { label: "Processed", num: true },
        { label: "Succeeded", num: true },
        { label: "Failed", num: true },
        { label: "Retried", num: true },
        { label: "Load" },
        { label: "Queues" },
        { label: "Software" },
      ],
      rows,
      "No worker seen yet. Workers appear when they send events (worker-online, heartbeats).",
    ));
  },
};

const workerPage = {
  enter(hostname) {
    this.info = el("div");
    this.registered = el("div");
    const target = "/api/workers/" + encodeURIComponent(hostname) + "/";
    const form = (label, fields, action, build, question) => {
      const inputs = fields.map((f) =>
        el("input", { name: f.name, placeholder: f.placeholder, size: f.size ?? 10 })
      );
      return el(
        "form",
        {
          onsubmit: (e) => {
            e.preventDefault();
            const values = Object.fromEntries(inputs.map((i) => [i.name, i.value]));
            post(target + action, build(values), question);
          },
        },
        inputs,
        el("button", { type: "submit" }, label),
      );
    };
    view.append(
      el("h1", {}, "Worker ", el("span", { class: "code" }, hostname)),
      this.info,
      el("h2", {}, "Actions"),
      el(
        "div",
        { class: "actions" },
        el("button", { onclick: () => post(target + "pool_grow", { n: 1 }) }, "Pool grow +1"),
        el("button", { onclick: () => post(target + "pool_shrink", { n: 1 }) }, "Pool shrink −1"),
        form("Add consumer", [{ name: "queue", placeholder: "queue" }], "add_consumer", (v) => v),
        form(
          "Cancel consumer",
          [{ name: "queue", placeholder: "queue" }],
          "cancel_consumer",
          (v) => v,
        ),
        form(
          "Rate limit",
          [{ name: "task", placeholder: "task name", size: 16 }, {
            name: "rate",
            placeholder: "10/s",
            size: 6,
          }],
          "rate_limit",
          (v) => v,
        ),
        form(
          "Time limit",
          [{ name: "task", placeholder: "task name", size: 16 }, {
            name: "soft",
            placeholder: "soft s",
            size: 6,
          }, { name: "hard", placeholder: "hard s", size: 6 }],
          "time_limit",
          (v) => v,
        ),
        el("button", {
          class: "danger",
          onclick: () => post(target + "shutdown", {}, "Shut down worker " + hostname + "?"),
        }, "Shut down"),
      ),
      el("h2", {}, "Registered tasks"),
      this.registered,
    );
  },
  update(hostname) {
    const w = store.workers.get(hostname);
    if (!w) {
      this.info.replaceChildren(el("p", { class: "muted" }, "Not seen yet."));
      return;
    }
    const field = (k, v) => [el("dt", {}, k), el("dd", {}, v)];
    this.info.replaceChildren(el(
      "dl",
      { class: "fields" },
      field("Status", badge(w.online ? "online" : "offline")),
      field("Last heartbeat", ago(w.lastHeartbeat) + " (every " + w.freq + " s)"),
      field("Pool", w.pool ? w.pool + " × " + dash(w.concurrency) : "—"),
      field("Active", String(w.active)),
      field("Processed", String(w.processed)),
      field(
        "Succeeded / failed / retried / revoked",
        [w.succeeded, w.failed, w.retried, w.revoked].join(" / "),
      ),
      field("Load", w.loadavg.join(", ") || "—"),
      field("Queues", w.queues ? w.queues.join(", ") : "—"),
      field("Software", w.software || "—"),
      field("PID", dash(w.pid)),
    ));
    this.registered.replaceChildren(
      w.registered ? el("ul", {}, w.registered.map((n) => el("li", { class: "code" }, n))) : el(
        "p",
        { class: "muted" },
        store.overview?.control === "replies"
          ? "Asking the worker…"
          : "Not supported on this broker (no remote-control replies).",
      ),
    );
  },
};

// --- Tasks
const STATES = [
  "",
  "PENDING",
  "RECEIVED",
  "STARTED",
  "SUCCESS",
  "FAILURE",
  "RETRY",
  "REVOKED",
  "REJECTED",
];

const tasksPage = {
  enter() {
    this.state = el(
      "select",
      { name: "state", onchange: () => this.update() },
      STATES.map((s) => el("option", { value: s }, s || "Any state")),
    );
    this.name = el("input", {
      name: "name",
      placeholder: "Task name",
      oninput: () => this.update(),
    });
    this.worker = el("select", { name: "worker", onchange: () => this.update() });
    this.search = el("input", {
      name: "search",
      placeholder: "Search by id",
      size: 36,
      oninput: () => this.update(),
    });
    this.count = el("span", { class: "muted" });
    this.body = el("div");
    view.append(
      el("h1", {}, "Tasks"),
      el("div", { class: "filters" }, this.state, this.name, this.worker, this.search, this.count),
      this.body,
    );
  },
  update() {
    const workers = [...store.workers.keys()].sort();
    const chosen = this.worker.value;
    if (this.worker.options.length !== workers.length + 1) {
      this.worker.replaceChildren(
        el("option", { value: "" }, "Any worker"),
        workers.map((w) => el("option", { value: w, selected: w === chosen }, w)),
      );
    }
    const state = this.state.value;
    const name = this.name.value.trim();
    const worker = this.worker.value;
    const search = this.search.value.trim();
    const all = [...store.tasks.values()].reverse();
    const shown = all.filter((t) =>
      (!state || t.state === state) && (!name || (t.name ?? "").includes(name)) &&
      (!worker || t.worker === worker) && (!search || t.uuid.includes(search))
    ).slice(0, 500);
    this.count.textContent = shown.length + " of " + all.length + " tasks";
    this.body.replaceChildren(table(
      [
        { label: "Name" },
        { label: "UUID" },
        { label: "State" },
        { label: "args" },
        { label: "kwargs" },
        { label: "Result" },
        { label: "Received" },
        { label: "Started" },
        { label: "Runtime", num: true },
        { label: "Worker" },
        { label: "Retries", num: true },
      ],
      shown.map((t) =>
        el(
          "tr",
          { "data-task": t.uuid },
          el("td", {}, dash(t.name)),
          el(
            "td",
            { class: "code" },
            el("a", { href: "#/task/" + encodeURIComponent(t.uuid) }, t.uuid),
          ),
          el("td", {}, badge(t.state)),
          el("td", { class: "code wrap task-args" }, dash(t.args)),
          el("td", { class: "code wrap" }, dash(t.kwargs)),
          el(
            "td",
            { class: "code wrap" },
            t.state === "FAILURE" ? dash(t.exception) : dash(t.result),
          ),
          el("td", {}, time(t.received)),
          el("td", {}, time(t.started)),
          el("td", { class: "num" }, t.runtime === null ? "—" : t.runtime.toFixed(3) + " s"),
          el("td", {}, dash(t.worker)),
          el("td", { class: "num" }, t.retries),
        )
      ),
      "No task seen yet. Tasks appear from task events: start workers with -E (--task-events).",
    ));
  },
};

const taskPage = {
  enter(id) {
    this.id = id;
    this.details = el("div", {}, el("p", { class: "muted" }, "Loading…"));
    this.canvas = el("div");
    const target = "/api/tasks/" + encodeURIComponent(id) + "/revoke";
    view.append(
      el("h1", {}, "Task ", el("span", { class: "code" }, id)),
      el(
        "div",
        { class: "actions" },
        el("button", {
          id: "revoke",
          onclick: () => post(target, { terminate: false }, "Revoke task " + id + "?"),
        }, "Revoke"),
        el("button", {
          id: "terminate",
          class: "danger",
          onclick: () =>
            post(
              target,
              { terminate: true },
              "Terminate task " + id + " (revoke and stop it if running)?",
            ),
        }, "Terminate"),
      ),
      this.details,
      el("h2", {}, "Canvas"),
      this.canvas,
    );
    this.fetchDetails();
  },
  async fetchDetails() {
    try {
      this.remote = await api("/api/tasks/" + encodeURIComponent(this.id));
    } catch (e) {
      this.remote = { error: String(e.message ?? e) };
    }
    this.update();
  },
  update() {
    const t = store.tasks.get(this.id) ?? this.remote?.task ?? null;
    const meta = this.remote?.meta ?? null;
    const field = (k, v) => [el("dt", {}, k), el("dd", {}, v)];
    if (this.lastState && t && t.state !== this.lastState) this.fetchDetails();
    this.lastState = t?.state;
    const state = t?.state ?? meta?.status ?? "PENDING";
    const result = t?.result ??
      (meta && meta.status === "SUCCESS" ? JSON.stringify(meta.result) : null);
    const traceback = t?.traceback ?? meta?.traceback ?? null;
    this.details.replaceChildren(
      el(
        "dl",
        { class: "fields" },
        field("Name", dash(t?.name)),
        field("State", badge(state)),
        field("args", el("span", { class: "code task-args" }, dash(t?.args))),
        field("kwargs", el("span", { class: "code" }, dash(t?.kwargs))),
        field("Result", el("span", { class: "code" }, dash(result))),
        field("Exception", el("span", { class: "code" }, dash(t?.exception))),
        field("Worker", dash(t?.worker)),
        field("Retries", String(t?.retries ?? 0)),
        field("Received", time(t?.received)),
        field("Started", time(t?.started)),
        field("Finished", time(t?.finished)),
        field("Runtime", t?.runtime == null ? "—" : t.runtime.toFixed(3) + " s"),
        field("ETA", dash(t?.eta)),
        field("Expires", dash(t?.expires)),
        field(
          "Backend",
          this.remote?.backendError
            ? "error: " + this.remote.backendError
            : meta
            ? "stored " + dash(meta.status) + (meta.date_done ? " at " + meta.date_done : "")
            : "no result stored",
        ),
      ),
      traceback ? [el("h2", {}, "Traceback"), el("pre", {}, traceback)] : [],
    );
    const node = (label, n, self) =>
      el(
        "div",
        { class: "node" + (self ? " self" : "") },
        el("span", { class: "muted" }, label + " "),
        n
          ? [
            el("a", { href: "#/task/" + encodeURIComponent(n.uuid), class: "code" }, n.uuid),
            " ",
            n.name ? n.name + " " : "",
            badge(n.state),
          ]
          : "—",
      );
    const r = this.remote ?? {};
    const children = r.children ?? [];
    this.canvas.replaceChildren(el(
      "div",
      { class: "canvas" },
      r.root ? node("root", r.root) : [],
      node("parent", r.parent ?? null),
      node("this", { uuid: this.id, name: t?.name ?? null, state }, true),
      r.group
        ? el(
          "div",
          { class: "node" },
          el("span", { class: "muted" }, "group "),
          el("span", { class: "code" }, r.group),
        )
        : [],
      children.length
        ? children.filter(Boolean).map((c) => node("child", c))
        : el("div", { class: "node muted" }, "no children (callbacks, chain links, chord bodies)"),
    ));
  },
};

// --- Queues
const queuesPage = {
  enter() {
    this.body = el("div");
    view.append(el("h1", {}, "Queues"), this.body);
    this.load();
    this.timer = setInterval(() => this.load(), 2000);
  },
  leave() {
    clearInterval(this.timer);
  },
  async load() {
    try {
      const data = await api("/api/queues");
      this.data = data;
      if (data.supported) store.queues = data.queues;
    } catch (e) {
      this.data = { error: String(e.message ?? e) };
    }
    this.update();
  },
  update() {
    const d = this.data;
    if (!d) return;
    if (d.error) return this.body.replaceChildren(el("p", {}, "Error: " + d.error));
    if (!d.supported) {
      return this.body.replaceChildren(
        el("div", { class: "note" }, "Queue counts are not supported on this broker."),
        table([{ label: "Queue" }], d.queues.map((q) => el("tr", {}, el("td", {}, q.queue)))),
      );
    }
    const n = (v) => (v === null || v === undefined ? "—" : String(v));
    this.body.replaceChildren(table(
      [
        { label: "Queue" },
        { label: "Waiting", num: true },
        { label: "Reserved (unacked)", num: true },
        { label: "Scheduled (ETA)", num: true },
        { label: "Dead letters", num: true },
      ],
      (store.queues ?? d.queues).map((q) =>
        el(
          "tr",
          { "data-queue": q.queue },
          el("td", {}, el("a", { href: "#/queue/" + encodeURIComponent(q.queue) }, q.queue)),
          el("td", { class: "num" }, n(q.waiting)),
          el("td", { class: "num" }, n(q.reserved)),
          el("td", { class: "num" }, n(q.scheduled)),
          el("td", { class: "num dead-count" }, n(q.deadLettered)),
        )
      ),
      "No queue known yet.",
    ));
  },
};

const queuePage = {
  enter(queue) {
    this.queue = queue;
    this.counts = el("div");
    this.scheduled = el("div");
    this.dead = el("div");
    const base = "/api/queues/" + encodeURIComponent(queue) + "/dead/";
    view.append(
      el("h1", {}, "Queue ", el("span", { class: "code" }, queue)),
      this.counts,
      el("h2", {}, "Dead-letter queue"),
      el(
        "div",
        { class: "actions" },
        el("button", {
          id: "replay-all",
          onclick: async () => {
            const r = await post(base + "replay", {}, "Replay every dead letter of " + queue + "?");
            if (r) toast("Replayed " + r.replayed);
            this.load();
          },
        }, "Replay all"),
        el("button", {
          id: "purge-dead",
          class: "danger",
          onclick: async () => {
            const r = await post(base + "purge", {}, "Delete every dead letter of " + queue + "?");
            if (r) toast("Purged " + r.purged);
            this.load();
          },
        }, "Purge"),
      ),
      this.dead,
      el("h2", {}, "Scheduled (ETA)"),
      this.scheduled,
    );
    this.load();
    this.timer = setInterval(() => this.load(), 2000);
  },
  leave() {
    clearInterval(this.timer);
  },
  async load() {
    const q = encodeURIComponent(this.queue);
    const [dead, scheduled] = await Promise.all([
      api("/api/queues/" + q + "/dead").catch((e) => ({ error: e.message })),
      api("/api/queues/" + q + "/scheduled").catch((e) => ({ error: e.message })),
    ]);
    this.deadData = dead;
    this.scheduledData = scheduled;
    this.update();
  },
  update() {
    const c = (store.queues ?? []).find((q) => q.queue === this.queue);
    const n = (v) => (v === null || v === undefined ? "—" : String(v));
    this.counts.replaceChildren(
      c
        ? el(
          "p",
          {},
          "Waiting " + n(c.waiting) + " · reserved " + n(c.reserved) + " · scheduled " +
            n(c.scheduled) + " · dead letters " + n(c.deadLettered),
        )
        : [],
    );
    const base = "/api/queues/" + encodeURIComponent(this.queue) + "/dead/";
    const list = (data, withReplay) => {
      if (!data) return el("p", { class: "muted" }, "Loading…");
      if (data.error) return el("p", {}, "Error: " + data.error);
      if (!data.supported) return el("div", { class: "note" }, "Not supported on this broker.");
      return table(
        [
          { label: "Task" },
          { label: "Task id" },
          { label: "args" },
          { label: "kwargs" },
          { label: withReplay ? "Reason" : "ETA" },
          { label: "" },
        ],
        data.items.map((item) =>
          el(
            "tr",
            { "data-dead": item.id },
            el("td", {}, dash(item.task)),
            el(
              "td",
              { class: "code" },
              item.taskId
                ? el("a", { href: "#/task/" + encodeURIComponent(item.taskId) }, item.taskId)
                : "—",
            ),
            el("td", { class: "code wrap" }, dash(item.args)),
            el("td", { class: "code wrap" }, dash(item.kwargs)),
            el("td", {}, withReplay ? dash(item.reason) : time(item.eta)),
            el(
              "td",
              {},
              withReplay
                ? el("button", {
                  class: "replay",
                  onclick: async () => {
                    const r = await post(
                      base + "replay",
                      { ids: [item.id] },
                      "Replay this message onto " + this.queue + "?",
                    );
                    if (r) toast("Replayed " + r.replayed);
                    this.load();
                  },
                }, "Replay")
                : "",
            ),
          )
        ),
        withReplay ? "The dead-letter queue is empty." : "No scheduled message.",
      );
    };
    this.dead.replaceChildren(list(this.deadData, true));
    this.scheduled.replaceChildren(list(this.scheduledData, false));
  },
};

// --- Beat
const beatPage = {
  enter() {
    this.body = el("div", {}, el("p", { class: "muted" }, "Loading…"));
    view.append(el("h1", {}, "Beat"), this.body);
    this.load();
  },
  async load() {
    const data = await api("/api/beat").catch((e) => ({ error: e.message, entries: [] }));
    this.body.replaceChildren(
      data.error || data.storeError
        ? el("div", { class: "note" }, "Beat store: " + (data.error ?? data.storeError))
        : [],
      table(
        [
          { label: "Name" },
          { label: "Task" },
          { label: "Schedule" },
          { label: "args" },
          { label: "kwargs" },
          { label: "Last run" },
          { label: "Next run" },
          { label: "Runs", num: true },
        ],
        data.entries.map((b) =>
          el(
            "tr",
            {},
            el("td", {}, b.name),
            el("td", { class: "code" }, b.task),
            el("td", { class: "code" }, b.schedule),
            el("td", { class: "code wrap" }, b.args),
            el("td", { class: "code wrap" }, b.kwargs),
            el("td", {}, time(b.lastRun)),
            el("td", {}, time(b.nextRun)),
            el("td", { class: "num" }, b.totalRunCount),
          )
        ),
        "The app has no periodic tasks (beatSchedule / addPeriodicTask).",
      ),
    );
  },
};

// --- Charts (uPlot)
const COLORS = ["#0d6efd", "#198754", "#dc3545", "#6f42c1", "#fd7e14", "#20c997", "#6c757d"];

const chartsPage = {
  enter() {
    this.grid = el("div", { class: "charts" });
    view.append(el("h1", {}, "Charts"), this.grid);
    this.plots = [];
    this.load();
    this.timer = setInterval(() => this.load(), 5000);
  },
  leave() {
    clearInterval(this.timer);
    for (const p of this.plots) p.destroy();
    this.plots = [];
  },
  async load() {
    const data = await api("/api/charts").catch(() => null);
    if (!data || !globalThis.uPlot) return;
    for (const p of this.plots) p.destroy();
    this.plots = [];
    this.grid.replaceChildren();
    const box = (title) => {
      const b = el("div", { class: "chart" }, el("h2", {}, title));
      this.grid.append(b);
      return b;
    };
    const width = Math.max(480, Math.min(760, (view.clientWidth - 40) / 2));
    const bars = globalThis.uPlot.paths.bars({ size: [0.7, 40] });
    const ts = data.minutes.map((m) => m.t / 1000);
    this.plots.push(
      new globalThis.uPlot(
        {
          width,
          height: 240,
          series: [
            {},
            { label: "succeeded", stroke: "#198754", fill: "rgba(25,135,84,.15)", width: 2 },
            { label: "failed", stroke: "#dc3545", fill: "rgba(220,53,69,.15)", width: 2 },
          ],
          axes: [{}, { label: "tasks / min" }],
        },
        [ts, data.minutes.map((m) => m.succeeded), data.minutes.map((m) => m.failed)],
        box("Succeeded and failed per minute"),
      ),
    );
    const labels = data.histogram.buckets.map((b) => "≤" + (b < 1 ? b * 1000 + "ms" : b + "s"));
    labels.push(">" + data.histogram.buckets.at(-1) + "s");
    this.plots.push(
      new globalThis.uPlot(
        {
          width,
          height: 240,
          scales: { x: { time: false } },
          series: [
            { label: "runtime", value: (_u, v) => v === null ? "—" : labels[v] ?? "" },
            {
              label: "tasks",
              stroke: "#0d6efd",
              fill: "rgba(13,110,253,.35)",
              paths: bars,
              points: { show: false },
            },
          ],
          axes: [
            { values: (_u, splits) => splits.map((i) => labels[i] ?? ""), space: 40, incrs: [1] },
            { label: "tasks" },
          ],
        },
        [labels.map((_, i) => i), data.histogram.counts],
        box("Runtime histogram"),
      ),
    );
    const samples = data.depth.samples;
    const queues = data.depth.queues;
    this.plots.push(
      new globalThis.uPlot({
        width,
        height: 240,
        series: [
          {},
          ...queues.map((q, i) => ({ label: q, stroke: COLORS[i % COLORS.length], width: 2 })),
        ],
        axes: [{}, { label: "waiting" }],
      }, [
        samples.map((s) => s.t / 1000),
        ...queues.map((q) => samples.map((s) => s.counts[q] ?? null)),
      ], box("Queue depth over time")),
    );
  },
};

const PAGES = {
  workers: workersPage,
  worker: workerPage,
  tasks: tasksPage,
  task: taskPage,
  queues: queuesPage,
  queue: queuePage,
  beat: beatPage,
  charts: chartsPage,
};

addEventListener("hashchange", navigate);
navigate();
connect();
