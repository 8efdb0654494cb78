// Draws docs/accuracy.svg from docs/bench/accuracy.json with Vega-Lite: cumulative tokens spent
// over time against the budget line, reservation off and on.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as vega from 'vega';
import * as vl from 'vega-lite';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const data = JSON.parse(fs.readFileSync(path.join(repo, 'docs/bench/accuracy.json'), 'utf8'));
const values = [];
for (const run of data.runs) {
  const series = `reservation ${run.reserve ? 'on' : 'off'}`;
  values.push({ ms: 0, spent: 0, series });
  for (const p of run.timeline) values.push({ ...p, series });
}
const end = Math.max(...values.map((v) => v.ms)) + 50;
const spec = {
  $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
  title: `${data.setup.requests} concurrent requests on a fresh ${data.setup.capacity}-token bucket`,
  width: 560,
  height: 300,
  layer: [
    {
      data: { values },
      mark: { type: 'line', interpolate: 'step-after', point: true },
      encoding: {
        x: { field: 'ms', type: 'quantitative', title: 'time since the first request (ms)', scale: { domain: [0, end] } },
        y: { field: 'spent', type: 'quantitative', title: 'tokens spent (cumulative)' },
        color: { field: 'series', type: 'nominal', title: null, legend: { orient: 'top-left' } },
      },
    },
    {
      data: { values: [{ budget: data.setup.capacity, label: `budget ${data.setup.capacity}` }] },
      layer: [
        { mark: { type: 'rule', strokeDash: [6, 4], color: 'black' }, encoding: { y: { field: 'budget', type: 'quantitative' } } },
        { mark: { type: 'text', align: 'right', dy: -6, x: 'width' }, encoding: { y: { field: 'budget', type: 'quantitative' }, text: { field: 'label' } } },
      ],
    },
  ],
};
const view = new vega.View(vega.parse(vl.compile(spec).spec), { renderer: 'none' });
const svg = await view.toSVG();
fs.writeFileSync(path.join(repo, 'docs/accuracy.svg'), svg);
console.log('wrote docs/accuracy.svg');
