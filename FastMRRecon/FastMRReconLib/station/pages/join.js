// The join page of the reading station: a reader enters a name and is sent to a personal link.
"use strict";

document.getElementById("join").addEventListener("submit", async (event) => {
  event.preventDefault();
  const message = document.getElementById("message");
  try {
    const response = await fetch("api/join", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ name: document.getElementById("name").value }),
    });
    const data = await response.json();
    if (!response.ok) { throw new Error(data.error || `error ${response.status}`); }
    window.location.assign(data.link);
  } catch (error) {
    message.textContent = error.message;
  }
});
