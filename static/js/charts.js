/* TeachCloud dashboards: draw <canvas data-chart data-source="<json_script id>"> with Chart.js.
 *
 * The data come from reports/charts.py through Django's json_script: {type, labels, datasets:
 * [{label, data, type?, raw?, of?, dashed?}], options: {stacked, horizontal, percent, money}}.
 * Labels are translated on the server; amounts are decimal strings. The same figures are in the
 * <details> table under each chart, so nothing here is the only way to read them.
 */
(function () {
  "use strict";
  if (typeof window.Chart === "undefined") { return; }

  var PALETTE = ["#0d6efd", "#fd7e14", "#198754", "#6f42c1", "#d63384", "#20c997",
    "#ffc107", "#0dcaf0", "#6c757d", "#dc3545", "#6610f2", "#adb5bd", "#495057"];
  var FREE = "#dee2e6";

  function number(value) {
    return value === null || value === undefined || value === "" ? null : Number(value);
  }

  function money(value) {
    return "¥" + Number(value).toLocaleString(undefined, {
      minimumFractionDigits: 2, maximumFractionDigits: 4
    });
  }

  function colour(index, spec, dataset) {
    if (spec.options.percent && index === spec.datasets.length - 1 && index > 0) { return FREE; }
    return dataset.type === "line" && dataset.dashed ? "#dc3545" : PALETTE[index % PALETTE.length];
  }

  function datasetsOf(spec) {
    return spec.datasets.map(function (d, i) {
      var c = colour(i, spec, d);
      var out = {
        label: d.label,
        data: d.data.map(number),
        backgroundColor: spec.type === "doughnut"
          ? d.data.map(function (_v, j) { return PALETTE[j % PALETTE.length]; }) : c,
        borderColor: spec.type === "doughnut" ? "#fff" : c,
        borderWidth: spec.type === "doughnut" ? 1 : 2
      };
      if (d.type) { out.type = d.type; }
      if (spec.type === "bar" && d.type !== "line") { out.maxBarThickness = 40; }
      if (d.type === "line" || spec.type === "line") {
        out.pointRadius = 0;
        out.tension = 0;
        out.fill = false;
        out.order = -1;  // lines in front of bars
        if (d.dashed) { out.borderDash = [6, 4]; }
      }
      return out;
    });
  }

  function tooltipLabel(spec) {
    return function (ctx) {
      var d = spec.datasets[ctx.datasetIndex];
      var label = spec.type === "doughnut" ? ctx.label : d.label;
      var value = d.data[ctx.dataIndex];
      if (spec.options.percent && d.raw) {
        return label + ": " + d.raw[ctx.dataIndex] + " / " + d.of[ctx.dataIndex] +
          " (" + value + " %)";
      }
      if (value === null || value === undefined) { return label + ": –"; }
      return label + ": " + (spec.options.money ? money(value) : value);
    };
  }

  function configOf(spec) {
    var o = spec.options;
    var config = {
      type: spec.type,
      data: { labels: spec.labels, datasets: datasetsOf(spec) },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        interaction: { mode: spec.type === "doughnut" ? "nearest" : "index", intersect: false },
        plugins: {
          legend: { display: spec.type === "doughnut" || spec.datasets.length > 1,
                    position: spec.type === "doughnut" ? "right" : "top" },
          tooltip: { callbacks: { label: tooltipLabel(spec) } }
        }
      }
    };
    if (spec.type === "doughnut") { return config; }
    var value = o.horizontal ? "x" : "y";
    var category = o.horizontal ? "y" : "x";
    var scales = {};
    scales[category] = { stacked: o.stacked, ticks: { autoSkip: true, maxRotation: 0 } };
    scales[value] = { stacked: o.stacked, beginAtZero: true, ticks: {} };
    if (o.percent) {
      scales[value].suggestedMax = 100;
      scales[value].ticks.callback = function (v) { return v + " %"; };
    } else if (o.money) {
      scales[value].ticks.callback = function (v) { return money(v); };
    }
    config.options.scales = scales;
    if (o.horizontal) { config.options.indexAxis = "y"; }
    return config;
  }

  function draw(canvas) {
    if (canvas.dataset.chartDrawn) { return; }
    var source = document.getElementById(canvas.dataset.source);
    if (!source) { return; }
    var spec = JSON.parse(source.textContent);
    var box = canvas.parentElement;
    if (spec.options.horizontal && box && spec.labels.length > 6) {
      // One row per member or project: let long lists grow instead of squeezing them.
      box.style.height = Math.max(16, 2 + spec.labels.length * 1.6) + "rem";
    }
    canvas.dataset.chartDrawn = "1";
    new window.Chart(canvas, configOf(spec));
  }

  function drawAll(root) {
    Array.prototype.forEach.call(root.querySelectorAll("canvas[data-chart]"), draw);
  }

  drawAll(document);
  // Charts swapped in by htmx are drawn too.
  document.addEventListener("htmx:afterSettle", function (event) { drawAll(event.target); });
})();
