/* The sandbox page: the workspace snapshot the server streams (server-sent events) drawn as
 * Slack would, and the console's controls, each sent to the server as a console line, a click
 * or a form submission (the server signs them exactly as the console does).
 *
 * Messages are kept by key and drawn again only when their version changes, so a card the bot
 * edits (chat.update) changes in place while the rest of the page stays put.
 */
(function () {
  "use strict";

  const BK = window.BlockKit;
  const token = document.querySelector('meta[name="runback-token"]').content;
  const $ = (id) => document.getElementById(id);
  const LOG_LIMIT = 400;

  let state = null;
  let thread = null; // {channel, ts} of the open thread
  let shownView = ""; // "id:hash" of the modal on screen
  let viewErrors = {}; // block_id -> error, for the modal on screen
  const closedViews = new Set();
  const channelNodes = new Map(); // key -> {stamp, node}
  const threadNodes = new Map();
  const history = [];
  let historyAt = 0;

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  // -- talking to the server ----------------------------------------------------------------------

  async function post(path, body) {
    const response = await fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Runback-Token": token },
      body: JSON.stringify(body),
    });
    const answer = await response.json().catch(() => ({ error: response.statusText }));
    if (!response.ok) throw new Error(answer.error || response.statusText);
    return answer;
  }

  function log(lines, kind) {
    const box = $("log");
    lines.forEach((line) => box.appendChild(el("div", "log-" + (kind || "out"), line)));
    while (box.childElementCount > LOG_LIMIT) box.firstElementChild.remove();
    box.scrollTop = box.scrollHeight;
  }

  let pending = 0; // requests in flight (the server runs them one at a time, in order)

  function setBusy(busy) {
    pending = Math.max(0, pending + (busy ? 1 : -1));
    document.body.classList.toggle("busy", pending > 0);
    $("status-busy").hidden = pending === 0;
  }

  // One console line, as typed in the console; its answer goes to the log.
  async function runLine(line) {
    log([(state ? `${state.me.name}@#${state.channel.name}> ` : "> ") + line], "in");
    setBusy(true);
    try {
      const answer = await post("/api/line", { line });
      log(answer.output || []);
      return true;
    } catch (error) {
      log(["! " + error.message], "error");
      showToast(error.message);
      return false;
    } finally {
      setBusy(false);
    }
  }

  function showToast(text) {
    const toast = $("toast");
    toast.textContent = text;
    toast.hidden = false;
    clearTimeout(showToast.timer);
    showToast.timer = setTimeout(() => (toast.hidden = true), 6000);
  }

  // -- buttons, confirm dialogs, modals ----------------------------------------------------------

  function confirmDialog(confirm) {
    return new Promise((resolve) => {
      const box = $("confirm");
      const body = $("confirm-body");
      body.replaceChildren();
      body.appendChild(el("h2", "dialog-title", (confirm.title && confirm.title.text) || ""));
      const text = confirm.text || {};
      body.appendChild(text.type === "mrkdwn" ? BK.mrkdwn(text.text, context()) : BK.plainText(text));
      const yes = $("confirm-yes");
      yes.textContent = (confirm.confirm && confirm.confirm.text) || "Yes";
      yes.className = "bk-button " + (confirm.style === "danger" ? "bk-danger" : "bk-primary");
      $("confirm-no").textContent = (confirm.deny && confirm.deny.text) || "Cancel";
      box.hidden = false;
      const done = (answer) => {
        box.hidden = true;
        yes.onclick = null;
        $("confirm-no").onclick = null;
        resolve(answer);
      };
      yes.onclick = () => done(true);
      $("confirm-no").onclick = () => done(false);
    });
  }

  function buttonHandler(message) {
    return async (element, blockId, button) => {
      if (element.confirm && !(await confirmDialog(element.confirm))) return;
      const label = (element.text && element.text.text) || "";
      log([`${state.me.name} clicks [${label}]`], "in");
      button.classList.add("bk-pressed");
      setBusy(true);
      try {
        const answer = await post("/api/click", { ts: message.ts, label });
        log(answer.output || []);
      } catch (error) {
        log(["! " + error.message], "error");
        showToast(error.message);
      } finally {
        button.classList.remove("bk-pressed");
        setBusy(false);
      }
    };
  }

  function context(message) {
    return {
      names: state ? state.names : {},
      channels: state ? state.channel_names : {},
      interactive: Boolean(message) && !String(message.ts).startsWith("ack-"),
      onButton: message ? buttonHandler(message) : null,
      onThread: openThread,
    };
  }

  function renderModal() {
    const open = state.view && !closedViews.has(state.view.id) ? state.view : null;
    const box = $("modal");
    if (!open) {
      box.hidden = true;
      shownView = "";
      return;
    }
    const stamp = `${open.id}:${open.hash}`;
    if (stamp === shownView) return;
    shownView = stamp;
    viewErrors = {};
    const view = open.view;
    $("modal-title").textContent = (view.title && view.title.text) || "";
    $("modal-submit").textContent = (view.submit && view.submit.text) || "Submit";
    $("modal-close").textContent = (view.close && view.close.text) || "Cancel";
    $("modal-submit").hidden = !view.submit;
    const body = $("modal-body");
    body.replaceChildren(BK.renderBlocks(view.blocks || [], { ...context(), interactive: false }));
    box.hidden = false;
    box.dataset.viewId = open.id;
    const first = body.querySelector("textarea, input");
    if (first) first.focus();
  }

  function showViewErrors() {
    $("modal-body").querySelectorAll(".bk-input").forEach((input) => {
      const error = input.querySelector(".bk-input-error");
      const text = viewErrors[input.dataset.blockId];
      error.textContent = text || "";
      error.hidden = !text;
      input.classList.toggle("bk-input-invalid", Boolean(text));
    });
  }

  async function submitModal() {
    const viewId = $("modal").dataset.viewId;
    const values = BK.inputValues($("modal-body"));
    log([`${state.me.name} submits the form`], "in");
    setBusy(true);
    try {
      const answer = await post("/api/submit", { view_id: viewId, values });
      viewErrors = answer.errors || {};
      if (Object.keys(viewErrors).length) {
        showViewErrors();
        log(Object.entries(viewErrors).map(([field, error]) => `! ${field}: ${error}`), "error");
      } else {
        closedViews.add(viewId);
        $("modal").hidden = true;
        log(answer.output || []);
      }
    } catch (error) {
      log(["! " + error.message], "error");
      showToast(error.message);
    } finally {
      setBusy(false);
    }
  }

  async function closeModal() {
    const viewId = $("modal").dataset.viewId;
    closedViews.add(viewId);
    $("modal").hidden = true;
    await post("/api/close-view", { view_id: viewId }).catch(() => {});
  }

  // -- the workspace ------------------------------------------------------------------------------

  function openThread(message) {
    thread = { channel: message.channel, ts: message.ts };
    render(state);
  }

  // Draw `messages` into `list`, reusing the node of every message whose version is unchanged.
  function sync(list, cache, messages, threaded) {
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    const keep = new Set();
    let previous = null;
    messages.forEach((message) => {
      const stamp = `${message.version}:${threaded ? 0 : message.replies}`;
      let entry = cache.get(message.key);
      if (!entry || entry.stamp !== stamp) {
        const shown = threaded ? { ...message, replies: 0 } : message;
        const node = BK.renderMessage(shown, context(message));
        if (entry) {
          node.classList.add("msg-updated");
          entry.node.replaceWith(node);
        }
        entry = { stamp, node };
        cache.set(message.key, entry);
      }
      keep.add(message.key);
      const expected = previous ? previous.nextSibling : list.firstChild;
      if (expected !== entry.node) list.insertBefore(entry.node, expected);
      previous = entry.node;
    });
    for (const [key, entry] of cache) {
      if (!keep.has(key)) {
        entry.node.remove();
        cache.delete(key);
      }
    }
    if (atBottom) list.scrollTop = list.scrollHeight;
  }

  function renderChannels() {
    const list = $("channels");
    list.replaceChildren();
    state.channels.forEach((channel) => {
      const item = el("button", "channel" + (channel.id === state.channel.id ? " active" : ""));
      item.type = "button";
      item.textContent = "# " + channel.name;
      item.dataset.channel = channel.name;
      item.addEventListener("click", () => {
        if (channel.id !== state.channel.id) runLine("in #" + channel.name);
      });
      list.appendChild(item);
    });
  }

  function renderUsers() {
    const select = $("user");
    const names = state.users.map((u) => u.name).join(",");
    if (select.dataset.names !== names) {
      select.replaceChildren();
      state.users.forEach((user) => {
        const option = el("option", "", `${user.real_name} (${user.name})`);
        option.value = user.name;
        select.appendChild(option);
      });
      select.dataset.names = names;
    }
    select.value = state.me.name;
  }

  function renderThread() {
    const pane = $("thread");
    const messages = thread
      ? state.messages.filter(
          (m) => m.channel === thread.channel && (m.ts === thread.ts || m.thread_ts === thread.ts)
        )
      : [];
    if (!messages.length) {
      pane.hidden = true;
      thread = null;
      threadNodes.forEach((entry) => entry.node.remove());
      threadNodes.clear();
      return;
    }
    pane.hidden = false;
    $("thread-channel").textContent = "#" + (state.channel_names[thread.channel] || "");
    sync($("thread-messages"), threadNodes, messages, true);
  }

  function render(next) {
    state = next;
    document.body.classList.add("ready");
    document.body.dataset.user = state.me.name;
    document.body.dataset.channel = state.channel.name;
    renderUsers();
    renderChannels();
    $("channel-name").textContent = "# " + state.channel.name;
    $("composer-input").placeholder = `Message #${state.channel.name} — a /command as ${state.me.name}, or a console line`;
    $("clock").textContent = state.clock;
    const inChannel = state.messages.filter((m) => m.channel === state.channel.id && m.root);
    sync($("messages"), channelNodes, inChannel, false);
    if (thread && thread.channel !== state.channel.id) thread = null;
    renderThread();
    window.SandboxPanel.render(state, runLine);
    renderModal();
  }

  function connect() {
    const source = new EventSource("/api/events");
    source.addEventListener("state", (event) => {
      $("status-live").className = "status live";
      $("status-live").textContent = "live";
      render(JSON.parse(event.data));
    });
    source.addEventListener("error", () => {
      $("status-live").className = "status offline";
      $("status-live").textContent = "reconnecting…";
    });
  }

  // -- the composer -------------------------------------------------------------------------------

  function wireComposer() {
    const input = $("composer-input");
    $("composer").addEventListener("submit", async (event) => {
      event.preventDefault();
      const line = input.value.trim();
      if (!line) return;
      history.push(line);
      historyAt = history.length;
      input.value = "";
      await runLine(line);
    });
    input.addEventListener("keydown", (event) => {
      if (event.key === "ArrowUp" && historyAt > 0) {
        input.value = history[--historyAt];
        event.preventDefault();
      } else if (event.key === "ArrowDown" && historyAt < history.length) {
        historyAt += 1;
        input.value = history[historyAt] || "";
        event.preventDefault();
      }
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    wireComposer();
    $("user").addEventListener("change", (event) => runLine("as " + event.target.value));
    $("thread-close").addEventListener("click", () => {
      thread = null;
      renderThread();
    });
    $("modal-submit").addEventListener("click", submitModal);
    $("modal-close").addEventListener("click", closeModal);
    $("modal-x").addEventListener("click", closeModal);
    window.SandboxPanel.wire(runLine);
    connect();
  });
})();
