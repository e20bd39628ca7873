// Line charts on a canvas, for a loss that arrives a point at a time over a long run: recent points are kept as
// they came, older ones are averaged in pairs whenever the series outgrows its limit, so memory and drawing time
// stay bounded however long the job runs.

export class Series {
  constructor(limit = 2000) {
    this.limit = limit;
    this.x = [];
    this.y = [];
  }

  load(xs, ys) {
    this.x = [];
    this.y = [];
    xs.forEach((x, i) => this.add(x, ys[i]));
  }

  add(x, y) {
    if (y === null || y === undefined || !Number.isFinite(y)) return;
    const last = this.x.length - 1;
    if (last >= 0 && x <= this.x[last]) {  // a report repeated after a reconnect, or a resumed run's overlap
      if (x === this.x[last]) this.y[last] = y;
      return;
    }
    this.x.push(x);
    this.y.push(y);
    if (this.x.length > this.limit) this.compact();
  }

  compact() {
    const older = Math.floor(this.x.length / 2) & ~1;
    const x = [], y = [];
    for (let i = 0; i < older; i += 2) {
      x.push(this.x[i + 1]);
      y.push((this.y[i] + this.y[i + 1]) / 2);
    }
    this.x = x.concat(this.x.slice(older));
    this.y = y.concat(this.y.slice(older));
  }

  get length() {
    return this.x.length;
  }
}

const PAD = { left: 64, right: 12, top: 12, bottom: 28 };

export class Chart {
  constructor(canvas, series, { color = "#1f4fd1", format = (v) => v.toPrecision(3) } = {}) {
    this.canvas = canvas;
    this.series = series;
    this.color = color;
    this.format = format;
    this.pending = false;
    this.observer = new ResizeObserver(() => this.redraw());
    this.observer.observe(canvas);
  }

  redraw() {
    this.canvas.dataset.points = String(this.series.length);
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.draw();
    });
  }

  dispose() {
    this.observer.disconnect();
  }

  draw() {
    const { canvas, series } = this;
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth, height = canvas.clientHeight;
    if (!width || !height) return;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    const g = canvas.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, width, height);
    g.font = "11px system-ui, sans-serif";
    g.fillStyle = "#6b7280";
    if (!series.length) {
      g.fillText("No points yet", PAD.left, height / 2);
      return;
    }
    const [x0, x1] = [series.x[0], series.x[series.length - 1]];
    let [y0, y1] = [Math.min(...series.y), Math.max(...series.y)];
    if (y1 - y0 <= 1e-9 * Math.max(Math.abs(y0), Math.abs(y1))) {  // flat (a constant learning rate): centre it
      const middle = (y0 + y1) / 2, margin = Math.abs(middle) * 0.1 || 1;
      [y0, y1] = [middle - margin, middle + margin];
    }
    const plotW = width - PAD.left - PAD.right, plotH = height - PAD.top - PAD.bottom;
    const px = (x) => PAD.left + (x1 === x0 ? plotW / 2 : ((x - x0) / (x1 - x0)) * plotW);
    const py = (y) => PAD.top + (1 - (y - y0) / (y1 - y0)) * plotH;
    this.grid(g, y0, y1, py, width);
    g.fillStyle = "#6b7280";
    g.textAlign = "left";
    g.fillText(`step ${x0}`, PAD.left, height - 8);
    g.textAlign = "right";
    g.fillText(`step ${x1}`, width - PAD.right, height - 8);
    g.strokeStyle = this.color;
    g.lineWidth = 1.5;
    g.beginPath();
    series.x.forEach((x, i) => (i ? g.lineTo(px(x), py(series.y[i])) : g.moveTo(px(x), py(series.y[i]))));
    g.stroke();
    if (series.length === 1) {
      g.fillStyle = this.color;
      g.fillRect(px(x0) - 2, py(series.y[0]) - 2, 4, 4);
    }
  }

  grid(g, y0, y1, py, width) {
    g.strokeStyle = "#e5e7eb";
    g.lineWidth = 1;
    g.textAlign = "right";
    for (let i = 0; i <= 4; i += 1) {
      const value = y0 + ((y1 - y0) * i) / 4;
      const y = py(value);
      g.beginPath();
      g.moveTo(PAD.left, y);
      g.lineTo(width - PAD.right, y);
      g.stroke();
      g.fillText(this.format(value), PAD.left - 6, y + 4);
    }
  }
}
