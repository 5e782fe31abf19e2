// kagi phone site: the few live parts, plain JS (no build step).
"use strict";
(function () {
  // A double tap sends one request (P-WEB-4): the buttons are disabled once the form is sent.
  // The server is idempotent as well (the form's one-time nonce).
  document.querySelectorAll("form[data-once]").forEach(function (form) {
    form.addEventListener("submit", function () {
      var scope = form.hasAttribute("data-op") ? document : form;
      var selector = form.hasAttribute("data-op") ? "form[data-op] button" : "button";
      scope.querySelectorAll(selector).forEach(function (b) { b.disabled = true; });
      form.setAttribute("data-sent", "1");
      var sending = document.getElementById("op-sending");
      if (sending && form.hasAttribute("data-op")) { sending.hidden = false; }
    });
  });

  // Card registration: the car waits for the tap; show the card once the car registered it.
  var waiting = document.getElementById("card-waiting");
  var shown = document.getElementById("card-registered");
  if (waiting && shown && waiting.dataset.poll) {
    var tries = 0;
    var poll = function () {
      tries += 1;
      fetch(waiting.dataset.poll, { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : { cards: [] }; })
        .then(function (body) {
          if (body.cards && body.cards.length) {
            shown.textContent = shown.dataset.template.replace("{card}", body.cards[0].card);
            shown.hidden = false;
            waiting.hidden = true;
          } else if (tries < 90) {
            setTimeout(poll, 2000);
          }
        })
        .catch(function () { if (tries < 90) { setTimeout(poll, 4000); } });
    };
    poll();
  }

  // Booking: a tap on a free slot sets the car and the start; the next tap sets the end.
  var form = document.getElementById("book-form");
  if (form) {
    var picking = "start";
    document.querySelectorAll(".slots .slot.free").forEach(function (slot) {
      slot.addEventListener("click", function () {
        var car = slot.parentElement.dataset.car;
        var day = document.getElementById("book-day").value;
        document.getElementById("book-car").value = car;
        if (picking === "start") {
          document.getElementById("book-start-day").value = day;
          document.getElementById("book-start").value = slot.dataset.time;
          picking = "end";
        } else {
          var parts = slot.dataset.time.split(":");
          var minutes = parseInt(parts[0], 10) * 60 + parseInt(parts[1], 10) + 15;
          var end = minutes >= 1440 ? "00:00" :
            String(Math.floor(minutes / 60)).padStart(2, "0") + ":" + String(minutes % 60).padStart(2, "0");
          document.getElementById("book-end-day").value = day;
          document.getElementById("book-end").value = end;
          picking = "start";
        }
      });
    });
  }
})();
