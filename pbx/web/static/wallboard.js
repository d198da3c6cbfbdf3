// The wallboard: one server-sent event stream of the board's state; no framework, no fetches
// from anywhere but this service. Values are set as text, never as HTML.
"use strict";

const LABELS = {available: "Available", ringing: "Ringing", in_call: "In call",
                wrap_up: "Wrap-up", paused: "Paused"};

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  row.appendChild(td);
}

function duration(seconds) {
  const m = Math.floor(seconds / 60), s = seconds % 60;
  return m + ":" + String(s).padStart(2, "0");
}

function fill(table, rows) {
  const body = table.tBodies[0];
  body.replaceChildren(...rows);
}

function queues(board) {
  fill(document.getElementById("queues"), board.queues.map((q) => {
    const tr = document.createElement("tr");
    tr.dataset.queue = q.name;
    cell(tr, q.name + " (" + q.language + ")", "name");
    cell(tr, String(q.waiting), "waiting" + (q.waiting > 0 ? " alert" : ""));
    cell(tr, duration(q.longest_wait), "longest");
    cell(tr, String(q.answered), "answered");
    cell(tr, String(q.abandoned), "abandoned");
    cell(tr, q.service_level === null ? "–" : q.service_level + "%", "level");
    return tr;
  }));
}

function states(id, rows, order) {
  const table = document.getElementById(id);
  const head = document.createElement("tr");
  cell(head, "");
  order.forEach((s) => cell(head, LABELS[s] || s));
  table.tHead.replaceChildren(head);
  fill(table, rows.map((r) => {
    const tr = document.createElement("tr");
    tr.dataset.key = r.name;
    cell(tr, r.name, "name");
    order.forEach((s) => cell(tr, String(r[s]), s));
    return tr;
  }));
}

function counts(id, values) {
  fill(document.getElementById(id), Object.entries(values).map(([k, n]) => {
    const tr = document.createElement("tr");
    tr.dataset.key = k;
    cell(tr, k.replace(/_/g, " "), "name");
    cell(tr, String(n), "count");
    return tr;
  }));
}

function show(board) {
  document.getElementById("day").textContent = board.day;
  document.getElementById("threshold").textContent = "(" + board.threshold + " s)";
  queues(board);
  states("languages", board.languages, board.states);
  states("regions", board.regions, board.states);
  counts("outcomes", board.outcomes);
  counts("entries", board.entries);
  counts("transfer-destinations", board.transfers);
  document.getElementById("calls-today").textContent = String(board.calls_today);
  document.getElementById("transfers").textContent = String(board.transfers_total);
}

function connect() {
  const live = document.getElementById("live");
  const source = new EventSource("/api/wallboard/events");
  source.onmessage = (e) => {
    show(JSON.parse(e.data));
    live.textContent = "live";
    live.className = "live";
  };
  source.onerror = () => {  // EventSource reconnects by itself
    live.textContent = "reconnecting";
    live.className = "stale";
  };
}

document.addEventListener("DOMContentLoaded", connect);
