/* TeachCloud portal: small behaviours that Bootstrap and htmx do not do by themselves. */
(function () {
  "use strict";
  // Ask before destructive actions, the one mechanism of the portal: data-confirm="Really?" on
  // the <form>, or on the submit button that is destructive (a form with Approve and Reject).
  // Listening in the capture phase stops the submit before htmx sees it, so hx-post forms use
  // data-confirm too (not hx-confirm).
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var button = event.submitter;
    var question = (button && button.dataset && button.dataset.confirm) ||
      (form.dataset && form.dataset.confirm);
    if (question && !window.confirm(question)) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);
  // Copy a join link: <button data-copy="#id">.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) { return; }
    var source = document.querySelector(button.dataset.copy);
    if (source && navigator.clipboard) {
      navigator.clipboard.writeText(source.textContent.trim());
      button.classList.add("btn-success");
    }
  });
})();
