// The desk's only script: copy the reply, and keep the clause list to the chosen
// category. Everything else is plain HTML forms.
"use strict";

function copyReply(button) {
  const area = document.getElementById(button.dataset.copy);
  const note = document.getElementById("copy-note");
  const done = () => { note.textContent = "Reply copied."; };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(area.value).then(done, () => { area.select(); document.execCommand("copy"); done(); });
  } else {  // plain http on another host than localhost: the older way
    area.focus();
    area.select();
    document.execCommand("copy");
    done();
  }
}

function narrowClauses(category, clause) {
  let firstShown = null;
  for (const group of clause.querySelectorAll("optgroup")) {
    const shown = group.dataset.category === category.value;
    group.hidden = !shown;
    for (const option of group.querySelectorAll("option")) {
      option.disabled = !shown;
      if (shown && firstShown === null) firstShown = option;
    }
  }
  if (clause.selectedOptions.length === 0 || clause.selectedOptions[0].disabled) {
    if (firstShown) firstShown.selected = true;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const copy = document.getElementById("copy-reply");
  if (copy) copy.addEventListener("click", () => copyReply(copy));
  const category = document.getElementById("f-category");
  const clause = document.getElementById("f-clause");
  if (category && clause) {
    narrowClauses(category, clause);
    category.addEventListener("change", () => narrowClauses(category, clause));
  }
});
