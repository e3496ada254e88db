// The live scoreboard page's script: renders each `top` event of the live stream.
"use strict";
const body = document.getElementById("board");
const status = document.getElementById("status");

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function show(board) {
  const rows = board.items.map((item) => {
    const tr = document.createElement("tr");
    tr.dataset.userId = item.user_id;
    tr.append(
      cell(String(item.rank), "rank"),
      cell(item.display_name || item.user_id.slice(0, 8), "name"),
      cell(String(item.score), "score"),
    );
    return tr;
  });
  if (rows.length === 0) {
    const tr = document.createElement("tr");
    tr.append(cell("no scores yet", "empty"));
    tr.firstChild.colSpan = 3;
    rows.push(tr);
  }
  body.replaceChildren(...rows);
}

// Follows the live stream. The browser reconnects by itself after a network error; a refusal
// (such as a 503 from a full node) closes the stream for good, so the page tries again later.
function follow() {
  const live = new EventSource("/api/v1/scoreboard/live");
  live.addEventListener("top", (event) => {
    show(JSON.parse(event.data));
    document.body.dataset.lastEventId = event.lastEventId;
  });
  live.onopen = () => {
    status.dataset.state = "live";
    status.textContent = "live";
  };
  live.onerror = () => {
    status.dataset.state = "reconnecting";
    status.textContent = "reconnecting…";
    if (live.readyState === EventSource.CLOSED) {
      setTimeout(follow, 5000);
    }
  };
}

follow();
