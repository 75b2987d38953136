// Sortable leaderboard tables: each column header holds a button; clicking it sorts the table body by that
// column (numbers numerically, using the cell's data-sort value when it has one) and toggles the direction.
// aria-sort tells screen readers the current order. No library: the site must work offline from file://.
"use strict";
(function () {
  function key(cell) {
    var raw = cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent.trim();
    return raw !== "" && !isNaN(Number(raw)) ? { n: Number(raw) } : { s: raw.toLowerCase() };
  }
  function compare(a, b) {
    // empty values sort last whatever the direction is, handled by the caller
    if ("n" in a && "n" in b) return a.n - b.n;
    if ("n" in a) return -1;
    if ("n" in b) return 1;
    return a.s < b.s ? -1 : a.s > b.s ? 1 : 0;
  }
  function sortBy(table, column, button) {
    var th = button.parentNode;
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.forEach(function (row, i) { row._order = i; });
    rows.sort(function (r1, r2) {
      var k1 = key(r1.cells[column]), k2 = key(r2.cells[column]);
      var e1 = "s" in k1 && k1.s === "", e2 = "s" in k2 && k2.s === "";
      if (e1 !== e2) return e1 ? 1 : -1;
      var c = compare(k1, k2);
      return (ascending ? c : -c) || r1._order - r2._order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (cell) { cell.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  }
  document.addEventListener("DOMContentLoaded", function () {
    Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
      Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, column) {
        var button = th.querySelector("button");
        if (button) button.addEventListener("click", function () { sortBy(table, column, button); });
      });
    });
  });
})();
