// The organizer's page of the reading station: per-reader progress and the unblinded summary (the same numbers
// as the Slicer module's Finish: ReaderStudy.summary), as a table, a chart and a CSV file.
"use strict";

const $ = (id) => document.getElementById(id);

function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    const td = document.createElement("td");
    if (cell instanceof Node) { td.appendChild(cell); } else { td.textContent = cell; }
    tr.appendChild(td);
  }
  return tr;
}

function link(href) {
  const a = document.createElement("a");
  a.href = href; a.textContent = href;
  return a;
}

async function refresh() {
  try {
    const response = await fetch("api/summary", { cache: "no-store" });
    const data = await response.json();
    if (!response.ok) { throw new Error(data.error || `error ${response.status}`); }
    $("study").textContent = `${data.study}: ${data.cases} cases, ${data.methods.length} versions each`;
    $("readers").tBodies[0].replaceChildren(...data.readers.map((r) => row([
      r.reader, `${r.finished} of ${data.cases}`, String(r.scored), r.last ? r.last.slice(0, 19).replace("T", " ") : "-",
      r.reader in data.links ? link(data.links[r.reader]) : "-",
    ])));
    $("join").href = data.join; $("join").textContent = data.join;
    const empty = data.summary.length === 0;
    $("empty").hidden = !empty; $("summary").hidden = empty; $("csv").hidden = empty; $("chart").hidden = empty;
    $("summary").tBodies[0].replaceChildren(...data.summary.map((s) => row([
      s.reader === "all" ? "all readers" : s.reader, s.method, String(s.count), s.mean.toFixed(2), s.sd.toFixed(2),
    ])));
    if (!empty) { $("chart").src = `summary.png?t=${Date.now()}`; }
    $("message").textContent = "";
  } catch (error) {
    $("message").textContent = error.message;
  }
}

$("refresh").addEventListener("click", refresh);
refresh();
