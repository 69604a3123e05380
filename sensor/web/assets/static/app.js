// tapbeat console: live updates over server-sent events. Everything that
// arrives is inserted as text (textContent), never as markup.
"use strict";
(function () {
  var alerts = document.getElementById("alerts");
  var endpoints = document.getElementById("endpoints");
  var status = document.getElementById("status");
  if (!(alerts && alerts.dataset.live === "1") && !endpoints && !status) return;
  var live = document.getElementById("live");
  var es = new EventSource("/api/v1/events");
  es.addEventListener("open", function () { if (live) live.textContent = "live"; document.body.dataset.live = "1"; });
  es.addEventListener("error", function () { if (live) live.textContent = "reconnecting"; document.body.dataset.live = "0"; });
  es.addEventListener("reset", function () { location.reload(); });
  es.addEventListener("event", function (m) {
    var ev;
    try { ev = JSON.parse(m.data); } catch (e) { return; }
    if (ev.endpoint_id && ev.status) setStatus(ev.endpoint_id, ev.status);
    if (alerts && ev.alert && wanted(ev)) addAlert(ev);
  });
  function setStatus(id, st) {
    var cells = [];
    if (endpoints) {
      endpoints.querySelectorAll("tbody tr").forEach(function (tr) {
        if (tr.dataset.id === id) cells.push(tr.querySelector("td.status"));
      });
    }
    if (status && status.dataset.id === id) cells.push(status);
    cells.forEach(function (c) {
      if (!c) return;
      c.textContent = st;
      c.className = "status st-" + st.replace(/[^a-z_]/g, "");
    });
  }
  var sevs = ["emergency", "alert", "critical", "error", "warning", "notice", "info", "debug"];
  function wanted(ev) {
    var d = alerts.dataset;
    if (d.type && d.type.split(",").indexOf(ev.type) < 0) return false;
    if (d.severity && sevs.indexOf(ev.severity) > sevs.indexOf(d.severity)) return false;
    if (d.endpoint && d.endpoint !== ev.endpoint_id && d.endpoint !== ev.endpoint_name) return false;
    return true;
  }
  function cell(tr, text, cls) {
    var td = document.createElement("td");
    td.textContent = text == null ? "" : String(text);
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }
  function addAlert(ev) {
    var body = alerts.tBodies[0];
    var none = body.querySelector("tr.none");
    if (none) none.remove();
    var tr = document.createElement("tr");
    tr.className = "sev-" + String(ev.severity).replace(/[^a-z]/g, "") + " fresh";
    cell(tr, ev.seq);
    cell(tr, String(ev.time).replace("T", " ").slice(0, 19));
    cell(tr, ev.type);
    cell(tr, ev.severity);
    var td = cell(tr, "");
    if (ev.endpoint_id) {
      var a = document.createElement("a");
      a.href = "/endpoints/" + encodeURIComponent(ev.endpoint_id);
      a.textContent = ev.endpoint_name || ev.endpoint_id;
      td.appendChild(a);
    }
    cell(tr, (ev.macs || []).join(" "), "mono");
    cell(tr, ev.reason);
    body.insertBefore(tr, body.firstChild);
    while (body.rows.length > 500) body.deleteRow(body.rows.length - 1);
  }
})();
