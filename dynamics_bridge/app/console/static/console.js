// dynamics-bridge console: the little the pages need from a script (they work without it).
(function () {
  "use strict";
  // A running replay or purge: poll its progress, reload once it is done.
  var panel = document.getElementById("job-panel");
  if (panel && panel.dataset.finished === "no") {
    var poll = function () {
      fetch(panel.dataset.poll, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.json(); })
        .then(function (job) {
          document.getElementById("job-done").textContent = job.done;
          document.getElementById("job-total").textContent = job.total;
          var bar = document.getElementById("job-progress");
          bar.max = job.total || 1;
          bar.value = job.done;
          if (job.finished) { window.location.reload(); } else { setTimeout(poll, 1000); }
        })
        .catch(function () { setTimeout(poll, 3000); });
    };
    setTimeout(poll, 500);
  }
  // The poison list: one box selects the page.
  var all = document.getElementById("select-all");
  if (all) {
    all.addEventListener("change", function () {
      document.querySelectorAll("input.poison-select").forEach(function (box) { box.checked = all.checked; });
    });
  }
})();
