// leadflow web app: light progressive enhancement. The pages work without it; with it, times show in
// the viewer's time zone, offers count down, and a page refreshes itself when its data changes.
"use strict";

function localTimes(root) {
  const format = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
  for (const el of root.querySelectorAll("time[datetime]")) {
    const when = new Date(el.getAttribute("datetime"));
    if (!Number.isNaN(when.getTime())) el.textContent = format.format(when);
  }
  for (const el of root.querySelectorAll("[data-timezone]")) {
    el.value = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
  }
}

function countdowns() {
  for (const el of document.querySelectorAll("[data-deadline]")) {
    const left = Math.round((new Date(el.dataset.deadline).getTime() - Date.now()) / 1000);
    if (left <= 0) { el.textContent = "(time is up)"; continue; }
    const h = Math.floor(left / 3600), m = Math.floor((left % 3600) / 60), s = left % 60;
    el.textContent = "(" + (h ? h + " h " : "") + (h || m ? m + " min " : "") + s + " s left)";
  }
}

async function refresh() {
  const response = await fetch(location.href, { headers: { "Accept": "text/html" }, credentials: "same-origin" });
  const page = new DOMParser().parseFromString(await response.text(), "text/html");
  const fresh = page.getElementById("live"), current = document.getElementById("live");
  // Anything but this page again (signed out, the lead gone to someone else): show that page instead.
  if (!response.ok || response.redirected || !fresh) { location.reload(); return; }
  if (current) {
    // Keep what the person selected: the rows are new, the choice is theirs.
    const chosen = new Set([...current.querySelectorAll("input[name=lead_ids]:checked")].map((el) => el.value));
    for (const box of fresh.querySelectorAll("input[name=lead_ids]")) box.checked = chosen.has(box.value);
    current.replaceWith(fresh);
    localTimes(fresh);
    countdowns();
    document.dispatchEvent(new CustomEvent("leadflow:refreshed"));
  }
}

function live() {
  const url = document.body.dataset.live;
  if (!url || !window.EventSource) return;
  const source = new EventSource(url);
  let pending = null;
  // The stream refused for good (the session ended, the person made inactive: decision 0079): the page asks for
  // itself again, which shows the sign-in page instead of data that no longer refreshes.
  source.addEventListener("error", () => { if (source.readyState === EventSource.CLOSED) refresh(); });
  source.addEventListener("changed", () => {
    if (pending) return;  // several changes in a burst: one refresh
    pending = setTimeout(() => { pending = null; refresh(); }, 50);
  });
}

function dialogs() {
  // Without this script a dialog shows inline (it is rendered open); with it, it is a modal opened on demand.
  for (const dialog of document.querySelectorAll("dialog")) {
    dialog.close();
    if ("show" in dialog.dataset) dialog.showModal();  // reopened with the server's error in it
    for (const close of dialog.querySelectorAll("[data-close]")) close.addEventListener("click", () => dialog.close());
  }
  for (const opener of document.querySelectorAll("[data-dialog]")) {
    opener.addEventListener("click", () => document.getElementById(opener.dataset.dialog).showModal());
  }
}

document.addEventListener("DOMContentLoaded", () => {
  dialogs();
  localTimes(document);
  countdowns();
  setInterval(countdowns, 1000);
  live();
});
