document.querySelectorAll("[data-copy]").forEach(function (b) {
  b.addEventListener("click", function () {
    var src = document.getElementById(b.dataset.copy);
    if (!src || !navigator.clipboard) return;
    navigator.clipboard.writeText(src.textContent.trim()).then(function () {
      b.textContent = "Copied";
      setTimeout(function () { b.textContent = "Copy"; }, 1500);
    });
  });
});
document.querySelectorAll("[data-contact]").forEach(function (box) {
  var text = document.getElementById("contact-text");
  var dot = box.querySelector(".dot");
  function check() {
    fetch(box.dataset.contact, { credentials: "same-origin" }).then(function (r) {
      return r.ok ? r.json() : null;
    }).then(function (s) {
      if (!s || s.status === "never") { setTimeout(check, 3000); return; }
      dot.className = "dot s-" + s.status;
      text.textContent = "First contact: " + s.edgeId + " checked in " + s.lastCheckIn + ". ";
      var a = document.createElement("a");
      a.href = box.dataset.env;
      a.textContent = "Open the environment";
      text.appendChild(a);
    }).catch(function () { setTimeout(check, 3000); });
  }
  setTimeout(check, 2000);
});
