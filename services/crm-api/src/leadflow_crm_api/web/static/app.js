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

// A field's place on the page, the same in a fresh copy of it: its form (the one it names, else the one it is in),
// its name (a box or a radio button: with its value).
function fieldKey(el) {
  const form = el.getAttribute("form") || (el.closest("form") ? el.closest("form").getAttribute("action") : "");
  const which = el.type === "checkbox" || el.type === "radio" ? el.value : "";
  return [form, el.name || el.id, which].join("\n");
}

// The options a select shows as the page built it: those marked selected, else (a single choice) the first.
function builtWith(select) {
  const marked = [...select.options].filter((o) => o.defaultSelected);
  if (select.multiple) return marked;
  const first = marked.length ? marked[marked.length - 1] : [...select.options].find((o) => !o.disabled);
  return first ? [first] : [];
}

// Whether the person changed a field from what the page was built with: a choice in progress.
function edited(el) {
  if (el.type === "checkbox" || el.type === "radio") return el.checked !== el.defaultChecked;
  if (el instanceof HTMLSelectElement) {
    const built = builtWith(el);
    return [...el.options].some((o) => o.selected !== built.includes(o));
  }
  return el.value !== el.defaultValue;
}

// A link's or a button's place on the page, the same in a fresh copy of it: where it goes or what it submits, and
// what it says. A field's is `fieldKey`.
function focusKey(el) {
  if (el instanceof HTMLAnchorElement) return ["a", el.getAttribute("href"), el.textContent.trim()].join("\n");
  if (el instanceof HTMLButtonElement) {
    const form = el.form ? el.form.getAttribute("action") : "";
    return ["button", form, el.getAttribute("formaction"), el.name, el.value, el.textContent.trim()].join("\n");
  }
  return el.name || el.id ? fieldKey(el) : null;
}

// The choices in progress in `root` (fields changed since the page was built), by place; and the focused element's
// place, a link or a button too (a refresh left a keyboard user's focus on the page's body: helper 196's review).
function choicesIn(root) {
  const choices = new Map();
  for (const el of root.querySelectorAll("input, select, textarea")) {
    if (el.type !== "hidden" && el.type !== "file" && (el.name || el.id) && edited(el)) choices.set(fieldKey(el), el);
  }
  const active = document.activeElement;
  const focused = active && active !== root && root.contains(active) ? focusKey(active) : null;
  // Which of the links or buttons alike it is (a race's offers: one link per agent to one lead page).
  const alike = focused === null ? [] : [...root.querySelectorAll("a[href], button")].filter((el) => focusKey(el) === focused);
  return { choices, focused, active, nth: Math.max(0, alike.indexOf(active)) };
}

// The fresh copy takes the choices in progress back (an option or a box only if it is still offered), and the focus.
function keepChoices(fresh, kept) {
  for (const el of fresh.querySelectorAll("input, select, textarea")) {
    const key = fieldKey(el), was = kept.choices.get(key);
    if (was && (el.type === "checkbox" || el.type === "radio")) el.checked = was.checked;
    else if (was && el instanceof HTMLSelectElement) {
      const chosen = new Set([...was.selectedOptions].map((o) => o.value));
      const offered = [...el.options].filter((o) => chosen.has(o.value));
      if (el.multiple) for (const o of el.options) o.selected = chosen.has(o.value);
      else if (offered.length) offered[0].selected = true;
    } else if (was) el.value = was.value;
    if (key === kept.focused) {
      el.focus({ preventScroll: true });
      try { el.setSelectionRange(kept.active.selectionStart, kept.active.selectionEnd); } catch (_) { /* no text */ }
    }
  }
  if (kept.focused === null || fresh.contains(document.activeElement)) return;
  const alike = [...fresh.querySelectorAll("a[href], button")].filter((el) => focusKey(el) === kept.focused);
  const same = alike[Math.min(kept.nth, alike.length - 1)];
  if (same) same.focus({ preventScroll: true });
}

// The page fetched again and its live part replaced: "shown"; "left" when the answer is another page (signed out,
// the lead gone to someone else), which is then shown instead; "later" when no answer came (the network, a server
// restarting behind its proxy: 5xx), the page kept as it is.
async function refresh() {
  let response;
  try {
    response = await fetch(location.href, { headers: { "Accept": "text/html" }, credentials: "same-origin" });
  } catch (_) {
    return "later";
  }
  if (response.status >= 500) return "later";
  const page = new DOMParser().parseFromString(await response.text(), "text/html");
  const fresh = page.getElementById("live"), current = document.getElementById("live");
  if (!response.ok || response.redirected || !fresh) { location.reload(); return "left"; }
  if (current) {
    // Keep what the person selected: the rows are new, the choice is theirs.
    const chosen = new Set([...current.querySelectorAll("input[name=lead_ids]:checked")].map((el) => el.value));
    for (const box of fresh.querySelectorAll("input[name=lead_ids]")) box.checked = chosen.has(box.value);
    // And any other choice in progress in the live part (a CRM status picked, not yet set): the data is new, the
    // choice stays the person's until they submit or leave it (decision 0086).
    const kept = choicesIn(current);
    current.replaceWith(fresh);
    keepChoices(fresh, kept);
    localTimes(fresh);
    countdowns();
    document.dispatchEvent(new CustomEvent("leadflow:refreshed"));
  }
  return "shown";
}

const RETRY_MS = [1000, 2000, 5000, 10000, 30000];  // how long a page without an answer waits before asking again

function live() {
  const url = document.body.dataset.live;
  if (!url || !window.EventSource) return;
  let pending = null, failures = 0, reopens = 0;
  // One refresh at a time: two in flight may answer out of order, and the older page would then stay shown with
  // nothing left to announce (a change heard meanwhile is fetched once the running one is done: `again`).
  let running = false, again = null;
  const wait = (n) => RETRY_MS[Math.min(n, RETRY_MS.length - 1)];
  // Refresh now; without an answer, again a little later (and the stream opened again once answered: `reopen`).
  const refreshing = (reopen) => {
    pending = null;
    document.dispatchEvent(new CustomEvent("leadflow:refreshing"));  // asked for (a test counts them)
    if (running) { again = { reopen: reopen || (again !== null && again.reopen) }; return; }
    running = true;
    refresh().then((outcome) => {
      running = false;
      const next = again;
      again = null;
      if (outcome === "later") {
        pending = setTimeout(() => refreshing(reopen || (next !== null && next.reopen)), wait(failures++));
        return;
      }
      failures = 0;
      if (outcome === "shown" && reopen) setTimeout(listen, wait(reopens++));  // refused again and again: slower
      if (outcome === "shown" && next !== null) refreshing(next.reopen && !reopen);  // one stream opened, not two
    });
  };
  const listen = () => {
    const source = new EventSource(url);  // its `since`: a change made while it was closed is announced at once
    // A dropped stream the browser opens again by itself. One it closed (refused: the session ended, the person
    // made inactive, decision 0079; or a proxy's error while crm-api restarts): the page asks for itself, which
    // shows the sign-in page instead of data that no longer refreshes, or else opens the stream again.
    source.addEventListener("open", () => { reopens = 0; });
    source.addEventListener("error", () => {
      if (source.readyState !== EventSource.CLOSED) return;
      clearTimeout(pending);
      refreshing(true);
    });
    source.addEventListener("changed", () => {
      if (pending) return;  // several changes in a burst: one refresh
      pending = setTimeout(() => refreshing(false), 50);
    });
  };
  listen();
}

function dialogs() {
  // Without this script a dialog shows inline (it is rendered open); with it, it is a modal opened on demand.
  for (const dialog of document.querySelectorAll("dialog")) {
    dialog.close();
    // Enter in a field submits with the dialog's own button: two dialogs share the list's form, whose default button
    // (the first) is the other dialog's (Enter in Lead Transfer assigned the leads: helper 196's review).
    dialog.addEventListener("keydown", (event) => {
      const own = dialog.querySelector("button[type=submit]");
      if (event.key !== "Enter" || !own || !(event.target instanceof HTMLInputElement)) return;
      if (["button", "submit", "reset"].includes(event.target.type)) return;
      event.preventDefault();
      own.click();
    });
    if ("show" in dialog.dataset) dialog.showModal();  // reopened with the server's error in it
    for (const close of dialog.querySelectorAll("[data-close]")) close.addEventListener("click", () => dialog.close());
  }
  for (const opener of document.querySelectorAll("[data-dialog]")) {
    opener.addEventListener("click", () => document.getElementById(opener.dataset.dialog).showModal());
  }
}

// What a person has typed or picked in a page's other forms survives submitting one of them: the answer to a form
// builds the page again, so those choices are kept in this tab for its next build of the same page, for a minute, and
// put back there (decision 0086). Not the submitted form's (its answer shows it as it should be now), nor a list's
// row selections (the bulk forms act on them).
const DRAFTS = "leadflow:drafts", DRAFT_MS = 60000;

function keepDrafts(submitted) {
  sessionStorage.removeItem(DRAFTS);
  if ((submitted.getAttribute("action") || "").endsWith("/sign-out")) return;  // nothing stays for the next person
  const drafts = {};
  for (const el of document.querySelectorAll("input, select, textarea")) {
    const skip = el.form === submitted || ["hidden", "password", "file"].includes(el.type) || el.name === "lead_ids";
    if (skip || !(el.name || el.id) || "timezone" in el.dataset || !edited(el)) continue;
    drafts[fieldKey(el)] = el.type === "checkbox" || el.type === "radio" ? { checked: el.checked }
      : el instanceof HTMLSelectElement ? { chosen: [...el.selectedOptions].map((o) => o.value) } : { value: el.value };
  }
  if (Object.keys(drafts).length) sessionStorage.setItem(DRAFTS, JSON.stringify({ path: location.pathname, at: Date.now(), drafts }));
}

function restoreDrafts() {
  const kept = JSON.parse(sessionStorage.getItem(DRAFTS) || "null");
  sessionStorage.removeItem(DRAFTS);
  if (!kept || kept.path !== location.pathname || Date.now() - kept.at > DRAFT_MS) return;
  for (const el of document.querySelectorAll("input, select, textarea")) {
    const draft = kept.drafts[fieldKey(el)];
    if (!draft || edited(el)) continue;  // a field the answer itself filled in (a refusal) is the answer's
    if ("checked" in draft) el.checked = draft.checked;
    else if ("chosen" in draft) for (const o of el.options) o.selected = draft.chosen.includes(o.value);
    else el.value = draft.value;
    el.dispatchEvent(new Event("change", { bubbles: true }));
  }
}

document.addEventListener("DOMContentLoaded", () => {
  restoreDrafts();
  document.addEventListener("submit", (event) => keepDrafts(event.target));
  dialogs();
  localTimes(document);
  countdowns();
  setInterval(countdowns, 1000);
  live();
});
