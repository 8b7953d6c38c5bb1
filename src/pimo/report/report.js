// Sortable tables: a click on a column header sorts the rows by that column (again: reverses).
// Cells may carry data-sort (a number); otherwise their text is compared. Empty values go last.
(function () {
  "use strict";

  function cellKey(row, column) {
    var cell = row.cells[column];
    if (!cell) { return ""; }
    var value = cell.getAttribute("data-sort");
    return value === null ? cell.textContent.trim() : value;
  }

  function sortTable(table, column, header) {
    var ascending = header.getAttribute("aria-sort") !== "ascending";
    var headers = table.tHead.rows[0].cells;
    for (var i = 0; i < headers.length; i++) {
      if (headers[i].querySelector("button")) { headers[i].setAttribute("aria-sort", "none"); }
    }
    header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var keys = rows.map(function (row) { return cellKey(row, column); });
    var numeric = keys.every(function (key) { return key === "" || !isNaN(Number(key)); });
    var order = rows.map(function (row, index) { return index; });
    order.sort(function (a, b) {
      var x = keys[a], y = keys[b];
      if (x === "" && y === "") { return a - b; }
      if (x === "") { return 1; }
      if (y === "") { return -1; }
      var result = numeric ? Number(x) - Number(y) : x.localeCompare(y);
      if (!ascending) { result = -result; }
      return result !== 0 ? result : a - b;
    });
    order.forEach(function (index) { body.appendChild(rows[index]); });
  }

  var tables = document.querySelectorAll("table.sortable");
  Array.prototype.forEach.call(tables, function (table) {
    var headers = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(headers, function (header, column) {
      var button = header.querySelector("button");
      if (!button) { return; }
      button.addEventListener("click", function () { sortTable(table, column, header); });
    });
  });
}());
