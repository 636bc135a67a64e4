// Chamados console: progressive enhancement only. Every form works without this file.
"use strict";

// Pages that refresh themselves (the dashboard): re-fetch this page and swap the marked part.
function refreshPart(part) {
  const seconds = Number(part.dataset.refresh);
  if (!seconds || seconds < 5) return;
  setInterval(async () => {
    if (document.hidden) return;
    try {
      const answer = await fetch(location.href, {credentials: "same-origin", headers: {"X-Console-Refresh": "1"}});
      if (!answer.ok || answer.redirected) return;
      const html = new DOMParser().parseFromString(await answer.text(), "text/html");
      const fresh = html.getElementById(part.id);
      if (fresh) part.replaceChildren(...fresh.childNodes);
    } catch (error) { /* offline for a moment: try again next time */ }
  }, seconds * 1000);
}

// Dialogs: a button with data-open-dialog opens the <dialog> of that id as a modal; without
// JavaScript the same control is a link that renders the dialog open in the page.
function wireDialogs() {
  document.querySelectorAll("[data-open-dialog]").forEach((opener) => {
    opener.addEventListener("click", (event) => {
      const dialog = document.getElementById(opener.dataset.openDialog);
      if (!dialog || typeof dialog.showModal !== "function") return;
      event.preventDefault();
      if (dialog.open) dialog.close();
      dialog.showModal();
      const first = dialog.querySelector("textarea, select, input:not([type=hidden])");
      if (first) first.focus();
    });
  });
  document.querySelectorAll("[data-close-dialog]").forEach((closer) => {
    closer.addEventListener("click", (event) => {
      const dialog = closer.closest("dialog");
      if (!dialog) return;
      event.preventDefault();
      dialog.close();
    });
  });
}

// Live chat: poll the chat's messages and append the new ones.
function wireChat(panel) {
  const log = panel.querySelector(".chat-log");
  const source = panel.dataset.chatSource;
  if (!log || !source) return;
  setInterval(async () => {
    if (document.hidden) return;
    try {
      const answer = await fetch(source, {credentials: "same-origin"});
      if (!answer.ok) return;
      const html = new DOMParser().parseFromString(await answer.text(), "text/html");
      const fresh = html.querySelector(".chat-log");
      if (fresh && fresh.childElementCount !== log.childElementCount) {
        log.replaceChildren(...fresh.childNodes);
        log.scrollTop = log.scrollHeight;
      }
    } catch (error) { /* try again next time */ }
  }, Number(panel.dataset.chatPoll || 3) * 1000);
  log.scrollTop = log.scrollHeight;
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-refresh]").forEach(refreshPart);
  document.querySelectorAll("[data-chat-source]").forEach(wireChat);
  wireDialogs();
});

// A long <select> gets a search box above it (hidden without JavaScript): typing hides the
// options that do not match.
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("input.select-filter[data-filters]").forEach((box) => {
    const select = document.getElementById(box.dataset.filters);
    if (!select) return;
    box.hidden = false;
    box.addEventListener("input", () => {
      const wanted = box.value.trim().toLocaleLowerCase("pt-BR");
      for (const option of select.options) {
        option.hidden = option.value !== "" && wanted !== "" &&
          !option.text.toLocaleLowerCase("pt-BR").includes(wanted);
      }
    });
  });
});
