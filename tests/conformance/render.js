// Renders every case of corpus.json with LiquidJS configured as headgate's
// reference (<< >> / <% %>, strictVariables, lenientIf, strictFilters) and
// prints one JSON line per case: {"ok": "..."} or {"error": "..."}.
'use strict';
const fs = require('fs');
const path = require('path');
const { Liquid } = require('liquidjs');

const engine = new Liquid({
  outputDelimiterLeft: '<<',
  outputDelimiterRight: '>>',
  tagDelimiterLeft: '<%',
  tagDelimiterRight: '%>',
  strictVariables: true,
  lenientIf: true,
  strictFilters: true,
});
// headgate's one filter LiquidJS lacks: Ruby's Base64.urlsafe_encode64.
engine.registerFilter('base64_url_safe_encode', (v) =>
  Buffer.from(v == null ? '' : String(v), 'utf8').toString('base64').replace(/\+/g, '-').replace(/\//g, '_'));

const corpus = JSON.parse(fs.readFileSync(path.join(__dirname, 'corpus.json'), 'utf8'));
const out = [];
for (const c of corpus.cases) {
  const vars = corpus.vars[c.vars || 'default'];
  try {
    const tpl = engine.parse(c.template);
    out.push({ ok: engine.renderSync(tpl, vars) });
  } catch (e) {
    out.push({ error: String(e.message).split('\n')[0] });
  }
}
process.stdout.write(JSON.stringify(out));
