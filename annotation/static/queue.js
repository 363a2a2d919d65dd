// Keyboard shortcuts for the review queue: 1/2/3 label, arrows pick a replacement,
// O toggles "fits the sentence only", Enter submits, S skips, U undoes the last label.
(function () {
  "use strict";
  const form = document.getElementById("label-form");
  const replacements = document.getElementById("replacements");
  const choices = replacements ? Array.from(replacements.querySelectorAll('input[name="replacement"]')) : [];

  function showReplacements() {
    if (!replacements || !form) return;
    const irrelevant = form.querySelector('input[name="label"][value="IR"]').checked;
    replacements.classList.toggle("active", irrelevant);
    choices.forEach((c) => { c.required = irrelevant; });
  }

  function pick(label) {
    const radio = form && form.querySelector('input[name="label"][value="' + label + '"]');
    if (!radio) return;
    radio.checked = true;
    showReplacements();
    if (label === "IR" && choices.length && !choices.some((c) => c.checked)) choices[0].checked = true;
  }

  function move(step) {
    if (!choices.length) return;
    pick("IR");
    let i = choices.findIndex((c) => c.checked);
    i = (i + step + choices.length) % choices.length;
    choices[i].checked = true;
    choices[i].closest("label").scrollIntoView({ block: "nearest", inline: "nearest" });
  }

  function submit(id) {
    const f = document.getElementById(id);
    if (f) f.requestSubmit ? f.requestSubmit() : f.submit();
  }

  if (form) form.addEventListener("change", showReplacements);
  showReplacements();
  document.documentElement.dataset.keys = "ready";  // lets browser tests wait until the shortcuts work

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const tag = (event.target && event.target.tagName) || "";
    if (tag === "TEXTAREA" || (tag === "INPUT" && event.target.type === "text")) return;
    const key = event.key;
    let handled = true;
    if (key === "1") pick("ES");
    else if (key === "2") pick("S");
    else if (key === "3") pick("IR");
    else if (key === "ArrowRight" || key === "ArrowDown") move(1);
    else if (key === "ArrowLeft" || key === "ArrowUp") move(-1);
    else if (key === "Enter") submit("label-form");
    else if (key === "u" || key === "U") submit("undo-form");
    else if (key === "s" || key === "S") submit("skip-form");
    else if ((key === "o" || key === "O") && replacements) {
      const box = replacements.querySelector('input[name="replacement_label"]');
      box.checked = !box.checked;
    } else handled = false;
    if (handled) event.preventDefault();
  });
})();
