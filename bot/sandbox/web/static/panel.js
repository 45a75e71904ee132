/* The side panel: Cloud Run's ground truth per service (what the emulator serves: revisions,
 * traffic, tags, feature flags, each revision's behaviour), and the sandbox's own controls
 * (revision behaviour, faults, alerts, sandbox time), each sent as the console line it stands for.
 *
 * window.SandboxPanel = { wire(runLine), render(state, runLine) }
 */
(function () {
  "use strict";

  const $ = (id) => document.getElementById(id);

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function percentText(ratio) {
    return `${Math.round(Number(ratio) * 10000) / 100}%`;
  }

  // Keep a select's options as given (value -> label) without losing what the user picked.
  function fillSelect(select, options) {
    const wanted = JSON.stringify(options);
    if (select.dataset.options === wanted) return;
    const picked = select.value;
    select.replaceChildren();
    options.forEach(([value, label]) => {
      const option = el("option", "", label);
      option.value = value;
      select.appendChild(option);
    });
    select.dataset.options = wanted;
    if (options.some(([value]) => value === picked)) select.value = picked;
  }

  function renderService(service) {
    const card = el("section", "service");
    card.dataset.service = service.name;
    const head = el("div", "service-head");
    head.appendChild(el("span", "service-name", service.name));
    head.appendChild(el("span", "badge badge-" + service.environment, service.environment));
    card.appendChild(head);
    if (service.error) {
      card.appendChild(el("div", "service-error", service.error));
      return card;
    }
    const bar = el("div", "traffic-bar");
    service.revisions
      .filter((revision) => revision.percent > 0)
      .forEach((revision, index) => {
        const part = el("div", "traffic-part traffic-part-" + (index % 4));
        part.style.width = revision.percent + "%";
        part.title = `${revision.revision} ${revision.percent}%`;
        part.textContent = revision.percent >= 12 ? `${revision.percent}%` : "";
        bar.appendChild(part);
      });
    card.appendChild(bar);
    const table = el("table", "revisions");
    service.revisions.forEach((revision) => {
      const row = el("tr", revision.percent > 0 ? "serving" : "");
      row.dataset.revision = revision.revision;
      row.dataset.percent = String(revision.percent);
      const name = el("td", "revision-name");
      const title = el("div", "revision-title");
      title.appendChild(el("code", "", revision.revision.replace(service.name + "-", "…")));
      title.title = `${revision.revision}\n${revision.image}${revision.ready ? "" : "\nnot Ready"}`;
      if (!revision.ready) title.appendChild(el("span", "badge badge-bad", "not ready"));
      revision.tags.forEach((tag) => title.appendChild(el("span", "badge badge-tag", tag)));
      name.appendChild(title);
      const health = revision.behaviour;
      const sick = health.healthz_status >= 400 || health.error_rate > 0.01 || health.p95_ms > 800;
      name.appendChild(
        el(
          "div",
          "revision-health" + (sick ? " sick" : ""),
          `${health.healthz_status} · ${percentText(health.error_rate)} err · ` +
            `${Math.round(health.p95_ms)} ms · ${Math.round(health.rps)} rps`
        )
      );
      const flags = el("div", "revision-flags");
      Object.entries(revision.flags).forEach(([flag, value]) => {
        const on = ["true", "1", "on", "yes"].includes(String(value).toLowerCase());
        flags.appendChild(el("span", "flag " + (on ? "flag-on" : "flag-off"), flag));
      });
      name.appendChild(flags);
      row.appendChild(name);
      row.appendChild(el("td", "revision-percent", revision.percent + "%"));
      table.appendChild(row);
    });
    card.appendChild(table);
    return card;
  }

  function render(state) {
    const box = $("services");
    const stamp = JSON.stringify(state.services);
    if (box.dataset.stamp !== stamp) {
      box.replaceChildren(...state.services.map(renderService));
      box.dataset.stamp = stamp;
    }
    const revisions = state.services.flatMap((service) =>
      (service.revisions || []).map((r) => [r.revision, r.revision])
    );
    fillSelect($("set-revision"), [...revisions, ["new", "new revisions (from now on)"]]);
    fillSelect($("fault-api"), state.fault_apis.map((api) => [api, api]));
    fillSelect($("alert-service"), state.services.map((s) => [s.name, s.name]));
    const faults = $("faults");
    faults.replaceChildren(
      ...state.faults.map((fault) =>
        el("li", "", `${fault.api} → ${fault.status ?? "delay"} (${fault.times ?? "∞"} left)`)
      )
    );
    $("faults-none").hidden = state.faults.length > 0;
  }

  function wire(runLine) {
    $("set-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const pairs = ["healthz", "error_rate", "p95_ms", "rps"]
        .map((key) => [key, $("set-" + key).value.trim()])
        .filter(([, value]) => value !== "")
        .map(([key, value]) => `${key}=${value}`);
      runLine(`set ${$("set-revision").value} ${pairs.join(" ")}`.trim());
    });
    $("fault-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const times = $("fault-times").value.trim() || "1";
      runLine(`fault ${$("fault-api").value} ${$("fault-status").value.trim()} ${times}`);
    });
    $("alert-open").addEventListener("click", () => runLine(`alert ${$("alert-service").value}`));
    $("alert-close").addEventListener("click", () =>
      runLine(`alert ${$("alert-service").value} closed`)
    );
    document.querySelectorAll("[data-wait]").forEach((button) => {
      button.addEventListener("click", () => runLine("wait " + button.dataset.wait));
    });
    $("wait-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const amount = $("wait-amount").value.trim();
      if (amount) runLine("wait " + amount);
    });
  }

  window.SandboxPanel = { wire, render };
})();
