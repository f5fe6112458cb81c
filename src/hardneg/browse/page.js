/* hardneg browse: renders the embedded data (see hardneg/browse/data.py for its layout).
   Every text from the data goes through textContent / setAttribute, never through HTML parsing. */
(function () {
  'use strict';
  var T0 = performance.now();
  var D = JSON.parse(document.getElementById('hb-data').textContent);
  var SCALE = D.score_scale, IDS = D.docs.ids, TEXT = D.docs.text, Q = D.queries, S = D.sets;
  var NQ = Q.ids.length, PAGE = 100, ROW_PAGE = 20;
  var FLAG_LABEL = {short: 'short of n', audit: 'audit reason', known_fn: 'trap / hidden positive',
                    leak: 'positive / duplicate'};
  var FLAG_HELP = {short: 'a row has fewer negatives than the strategy asks for',
                   audit: 'a negative is flagged in the audit file',
                   known_fn: 'a negative is an injected trap or a hidden positive',
                   leak: 'a negative is a labelled positive of the query or has the same text as one'};

  // ---- helpers ------------------------------------------------------------------------------------------
  function el(tag, attrs) {
    var e = document.createElement(tag);
    if (attrs) for (var k in attrs) {
      if (k === 'class') e.className = attrs[k];
      else if (k === 'text') e.textContent = attrs[k];
      else if (k.slice(0, 2) === 'on') e.addEventListener(k.slice(2), attrs[k]);
      else e.setAttribute(k, attrs[k]);
    }
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (c === null || c === undefined || c === false) continue;
      e.appendChild(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
    }
    return e;
  }
  function svg(tag, attrs) {
    var e = document.createElementNS('http://www.w3.org/2000/svg', tag);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    return e;
  }
  function num(n) { return Number(n).toLocaleString('en-US'); }
  function sc(v) { return v === null || v === undefined ? '–' : (v / SCALE).toFixed(4); }
  function q50(v) { return v === null || v === undefined ? '–' : v.toFixed(4); }
  function plural(n, word) { return num(n) + ' ' + word + (n === 1 ? '' : 's'); }
  function pct(a, b) { return b ? ' (' + (100 * a / b).toFixed(1) + '%)' : ''; }

  // ---- indexes ------------------------------------------------------------------------------------------
  S.forEach(function (s) {
    var nn = s.neg.nn, off = new Int32Array(nn.length + 1);
    for (var i = 0; i < nn.length; i++) off[i + 1] = off[i] + nn[i];
    s._off = off;
    s._badge = new Map();
    for (var j = 0; j < s.neg.badge_at.length; j++) s._badge.set(s.neg.badge_at[j], s.neg.badge[j]);
    s._tip = new Map();
    for (j = 0; j < s.neg.tip_at.length; j++) s._tip.set(s.neg.tip_at[j], s.neg.tip[j]);
  });
  var PAD = D.badges.findIndex(function (b) { return b.kind === 'pad'; });
  var anyFlag = new Int32Array(NQ);
  S.forEach(function (s) { for (var i = 0; i < NQ; i++) anyFlag[i] |= s.qflag[i]; });
  var known = new Map();
  for (var k = 0; k < D.known.q.length; k++) {
    var kq = D.known.q[k];
    if (!known.has(kq)) known.set(kq, []);
    known.get(kq).push({doc: D.known.doc[k], badge: D.known.badge[k]});
  }
  function removedOf(s, row) {
    var r = s.removed;
    if (!r || !r.row.length) return [];
    var lo = 0, hi = r.row.length;
    while (lo < hi) { var m = (lo + hi) >> 1; if (r.row[m] < row) lo = m + 1; else hi = m; }
    var out = [];
    for (var i = lo; i < r.row.length && r.row[i] === row; i++) out.push(i);
    return out;
  }
  var hay = null;  // lower-cased search text per query, built on the first search
  function buildHay() {
    hay = new Array(NQ);
    for (var qi = 0; qi < NQ; qi++) {
      var parts = ['', Q.ids[qi].toLowerCase(), ''], seen = new Set();
      for (var r = Q.start[qi]; r < Q.start[qi + 1]; r++) {
        seen.add(D.rows.pos[r]);
        S.forEach(function (s) { for (var f = s._off[r]; f < s._off[r + 1]; f++) seen.add(s.neg.doc[f]); });
      }
      seen.forEach(function (d) { parts.push(IDS[d].toLowerCase()); });
      parts.push('');
      hay[qi] = {ids: parts.join('\u0001'), text: Q.text[qi].toLowerCase()};
    }
  }

  // ---- state --------------------------------------------------------------------------------------------
  var st = {term: '', flags: {}, scope: -1, page: 0, sel: -1, list: null, rowsShown: ROW_PAGE};
  var ui = {};

  function applyFilter() {
    var term = st.term.trim().toLowerCase(), mode = 'any';
    if (term.slice(0, 4) === 'qid:') { mode = 'qid'; term = term.slice(4).trim(); }
    else if (term.slice(0, 4) === 'doc:') { mode = 'doc'; term = term.slice(4).trim(); }
    if (term && !hay) buildHay();
    var need = 0;
    for (var f in st.flags) if (st.flags[f]) need |= D.flags[f];
    var flagsOf = st.scope < 0 ? anyFlag : S[st.scope].qflag;
    var b0 = [], b1 = [], b2 = [];
    for (var qi = 0; qi < NQ; qi++) {
      if ((flagsOf[qi] & need) !== need) continue;
      if (!term) { b2.push(qi); continue; }
      var h = hay[qi];
      if (Q.ids[qi].toLowerCase() === term) { if (mode !== 'doc') b0.push(qi); continue; }
      if (mode === 'qid') continue;
      if (h.ids.indexOf('\u0001' + term + '\u0001') >= 0) { b1.push(qi); continue; }
      if (mode === 'doc') continue;
      if (h.text.indexOf(term) >= 0 || h.ids.indexOf(term) >= 0) b2.push(qi);
    }
    st.list = b0.concat(b1, b2);
    st.page = 0;
    renderList();
    if (st.list.length && (st.list.indexOf(st.sel) < 0 || b0.length)) select(st.list[0]);
    else if (!st.list.length) renderDetail(-1);
    if (window.hardnegBrowse) window.hardnegBrowse.term = st.term;  // for tests: the search shown
  }

  // ---- header and strategy cards -----------------------------------------------------------------------
  function header() {
    var L = D.limit, src = D.sources || {};
    var meta = el('p', {class: 'meta'},
      el('b', {text: num(L.queries_shown)}), ' queries · ', el('b', {text: num(L.rows_shown)}),
      ' rows (one per query and positive) · ', el('b', {text: String(S.length)}),
      S.length === 1 ? ' mined set' : ' mined sets side by side');
    if (src.dataset) meta.appendChild(document.createTextNode(' · data ' + src.dataset.name + '/' + src.dataset.split +
      ' (' + num(src.dataset.docs) + ' documents)'));
    if (src.injected) meta.appendChild(document.createTextNode(' · ' + plural(src.injected.docs, 'injected trap')));
    if (src.hidden) meta.appendChild(document.createTextNode(' · ' + plural(src.hidden.docs, 'hidden positive')));
    if (src.audit) meta.appendChild(document.createTextNode(' · audit: ' + plural(src.audit.lines, 'flagged negative')));
    var lim = L.queries !== null && L.queries_shown < L.queries_total
      ? 'Limited with --limit ' + L.queries + ': the first ' + num(L.queries_shown) + ' of ' + num(L.queries_total) +
        ' queries (' + num(L.rows_shown) + ' of ' + num(L.rows_total) + ' rows). '
      : '';
    var size = el('p', {class: 'size'}, lim + 'This page is built for up to ' + num(L.rows_soft_limit) +
      ' rows (about 15 bytes per negative, plus each query and document text once: 110k rows with 2 strategies ' +
      'of 4 negatives make about 19 MB); for bigger runs, ' +
      '`hardneg browse --limit N` keeps only the first N queries, with all their rows. The list is paged and ' +
      'each query is drawn when it is opened.');
    return el('header', null, el('h1', {text: D.title}), meta, size);
  }

  function hist(edges, series, opts) {
    var W = 300, H = 130, ml = 8, mr = 8, mt = 14, mb = 18, pw = W - ml - mr, ph = H - mt - mb;
    var nb = edges.length - 1, max = 1;
    series.forEach(function (s) { s.counts.forEach(function (c) { if (c > max) max = c; }); });
    var g = svg('svg', {viewBox: '0 0 ' + W + ' ' + H, role: 'img'});
    var lo = edges[0], hi = edges[nb], x = function (v) { return ml + (v - lo) / (hi - lo) * pw; };
    series.forEach(function (s) {
      for (var i = 0; i < nb; i++) {
        var c = s.counts[i];
        if (!c) continue;
        var h = c / max * ph, color = s.color;
        if (opts.split && (edges[i] + edges[i + 1]) / 2 < 0) color = opts.split;
        g.appendChild(svg('rect', {x: x(edges[i]) + 0.3, y: mt + ph - h, width: Math.max(0.6, pw / nb - 0.6),
                                   height: h, fill: color, 'fill-opacity': s.opacity || 0.6}));
      }
    });
    g.appendChild(svg('line', {x1: ml, x2: ml + pw, y1: mt + ph, y2: mt + ph, stroke: '#98a2b3'}));
    if (opts.zero && lo < 0 && hi > 0) g.appendChild(svg('line', {x1: x(0), x2: x(0), y1: mt, y2: mt + ph,
      stroke: '#111827', 'stroke-dasharray': '3 2'}));
    for (var t = 0; t <= 4; t++) {
      var v = lo + (hi - lo) * t / 4, tx = svg('text', {x: x(v), y: H - 4, 'text-anchor': t === 0 ? 'start' : t === 4 ? 'end' : 'middle'});
      tx.textContent = v.toFixed(2);
      g.appendChild(tx);
    }
    var ym = svg('text', {x: W - mr, y: 10, 'text-anchor': 'end'});
    ym.textContent = 'max ' + num(max);
    g.appendChild(ym);
    var lx = ml + 4;
    series.forEach(function (s) {
      g.appendChild(svg('rect', {x: lx, y: 3, width: 8, height: 8, fill: s.color, 'fill-opacity': 0.8}));
      var lt = svg('text', {x: lx + 11, y: 10});
      lt.textContent = s.label;
      g.appendChild(lt);
      lx += 16 + s.label.length * 5.2;
    });
    return g;
  }

  function card(s, si) {
    var m = s.summary, ch = D.charts.sets[si], rows = m.rows;
    var tb = el('table');
    function tr(k, v, title) { tb.appendChild(el('tr', title ? {title: title} : null, el('td', {text: k}), el('td', {class: 'v', text: v}))); }
    tr('rows (query, positive)', num(rows));
    tr('negatives per row asked (n)', String(s.n));
    tr('rows short of n', num(m.short) + pct(m.short, rows));
    tr('rows without negatives', num(m.empty) + pct(m.empty, rows));
    tr('top-1 negative above the positive', num(m.top1_above_pos) + pct(m.top1_above_pos, rows));
    tr('median positive / top-1 negative score', q50(m.pos_q50) + ' / ' + q50(m.top1_q50));
    tr('labelled positives / duplicates mined', num(m.positive) + ' / ' + num(m.duplicate), FLAG_HELP.leak);
    if (D.sources && (D.sources.injected || D.sources.hidden)) tr('traps / hidden positives mined', num(m.trap) + ' / ' + num(m.hidden));
    if (D.sources && D.sources.audit) tr('negatives with an audit reason', num(m.audit));
    if (m.pad) tr('padded negatives', num(m.pad));
    var run = s.run;
    if (run && run.removed_by_filter) Object.keys(run.removed_by_filter).forEach(function (f) {
      tr('removed by ' + f + ' (whole run, per row)', num(run.removed_by_filter[f]) +
         (run.removed_per_row ? ' (' + Number(run.removed_per_row[f]).toFixed(1) + ')' : ''));
    });
    var teach = s.teachers.length > 1 ? 'teachers ' + s.teachers.join(', ') : (s.teacher ? 'teacher ' + s.teacher : 'teacher unknown');
    var c1 = el('div', {class: 'chart'}, el('div', {class: 'ct', text: '(a) positive vs top-1 negative score'}),
      hist(D.charts.edges, [{counts: ch.pos, color: '#1f9d55', label: 'positive'},
                            {counts: ch.top1, color: '#d97706', label: 'top-1 negative'}], {}));
    var c2 = el('div', {class: 'chart'}, el('div', {class: 'ct', text: '(b) positive − top-1 negative (red: negative above)'}),
      hist(D.charts.diff_edges, [{counts: ch.diff, color: '#2563eb', label: 'pos − neg1'}], {zero: true, split: '#dc2626'}));
    return el('div', {class: 'card', 'data-set': s.name},
      el('h3', {text: s.name}), el('div', {class: 'src', text: teach + (s.source ? ' · ' + s.source : '')}),
      tb, el('div', {class: 'charts'}, c1, c2),
      s.removed_note ? el('div', {class: 'note', text: s.removed_note}) : null);
  }

  // ---- list ---------------------------------------------------------------------------------------------
  function controls() {
    ui.search = el('input', {type: 'search', id: 'search', placeholder: 'Search query text, qid or docid',
      'aria-label': 'search', autocomplete: 'off'});
    var timer = null;
    ui.search.addEventListener('input', function () {
      clearTimeout(timer);
      timer = setTimeout(function () { st.term = ui.search.value; applyFilter(); }, 120);
    });
    var filters = el('div', {class: 'filters'}, el('span', {class: 'help', text: 'only queries with:'}));
    Object.keys(D.flags).forEach(function (f) {
      var cb = el('input', {type: 'checkbox', 'data-flag': f});
      cb.addEventListener('change', function () { st.flags[f] = cb.checked; applyFilter(); });
      filters.appendChild(el('label', {title: FLAG_HELP[f]}, cb, ' ' + FLAG_LABEL[f]));
    });
    var scope = el('select', {id: 'scope', 'aria-label': 'filter scope'}, el('option', {value: '-1', text: 'in any mined set'}));
    S.forEach(function (s, i) { scope.appendChild(el('option', {value: String(i), text: 'in ' + s.name})); });
    scope.addEventListener('change', function () { st.scope = +scope.value; applyFilter(); });
    if (S.length > 1) filters.appendChild(scope);
    ui.count = el('span', {id: 'count'});
    ui.prev = el('button', {text: '‹ prev', onclick: function () { st.page--; renderList(); }});
    ui.next = el('button', {text: 'next ›', onclick: function () { st.page++; renderList(); }});
    return el('div', {class: 'controls'}, ui.search, filters,
      el('div', {class: 'status'}, ui.count, el('span', null, ui.prev, ' ', ui.next)),
      el('div', {class: 'help', text: 'qid:ID or doc:ID for an exact id · ↑/↓ or j/k to move'}));
  }

  function renderList() {
    var L = st.list, pages = Math.max(1, Math.ceil(L.length / PAGE));
    st.page = Math.min(Math.max(st.page, 0), pages - 1);
    var a = st.page * PAGE, b = Math.min(L.length, a + PAGE);
    ui.count.textContent = (L.length ? num(a + 1) + '–' + num(b) + ' of ' : '') + num(L.length) +
      (L.length === NQ ? ' queries' : ' matching (of ' + num(NQ) + ' queries)');
    ui.list.setAttribute('data-count', String(L.length));
    ui.prev.disabled = st.page === 0;
    ui.next.disabled = st.page >= pages - 1;
    var frag = document.createDocumentFragment();
    for (var i = a; i < b; i++) frag.appendChild(entry(L[i]));
    ui.list.textContent = '';
    if (!L.length) ui.list.appendChild(el('li', {class: 'empty', text: 'No query matches.'}));
    ui.list.appendChild(frag);
    ui.list.scrollTop = 0;
  }

  function entry(qi) {
    var nr = Q.start[qi + 1] - Q.start[qi], f = anyFlag[qi];
    var m = el('div', {class: 'qm'}, el('span', {class: 'mono', text: Q.ids[qi]}), nr + (nr === 1 ? ' positive' : ' positives'));
    Object.keys(D.flags).forEach(function (k) {
      if (f & D.flags[k]) m.appendChild(el('span', {class: 'dot ' + k, title: FLAG_HELP[k], text: FLAG_LABEL[k]}));
    });
    var li = el('li', {'data-qid': Q.ids[qi], class: qi === st.sel ? 'sel' : ''}, el('div', {class: 'qt', text: Q.text[qi]}), m);
    li.addEventListener('click', function () { select(qi); });
    return li;
  }

  function select(qi) {
    st.sel = qi;
    st.rowsShown = ROW_PAGE;
    var items = ui.list.children;
    for (var i = 0; i < items.length; i++) items[i].classList.toggle('sel', items[i].getAttribute('data-qid') === (qi >= 0 ? Q.ids[qi] : null));
    renderDetail(qi);
    if (qi >= 0 && history.replaceState) {
      try { history.replaceState(null, '', '#q=' + encodeURIComponent(Q.ids[qi])); } catch (e) { /* file:// in some browsers */ }
    }
  }

  // ---- detail -------------------------------------------------------------------------------------------
  function textBlock(d) {
    var t = TEXT[d];
    var b = el('div', {class: 'txt', title: 'click to expand', text: t || '(text not available)'});
    b.addEventListener('click', function () { b.classList.toggle('open'); });
    return b;
  }
  function badge(code, extra) {
    var b = D.badges[code];
    return el('span', {class: 'badge ' + b.kind, title: extra || b.kind, text: b.label});
  }
  function docId(d) {
    var term = st.term.trim().toLowerCase().replace(/^(doc|qid):/, '').trim();
    return el('span', {class: 'mono' + (term && IDS[d].toLowerCase() === term ? ' hit' : ''), text: IDS[d]});
  }

  function negItem(s, f, posScore, k) {
    var d = s.neg.doc[f], v = s.neg.score[f], rk = s.neg.rank[f], codes = s._badge.get(f) || [];
    var line = el('div', {class: 'nl'}, el('span', {class: 'k', text: '#' + (k + 1)}), docId(d));
    var scEl = el('span', {class: 'sc' + (v !== null && posScore !== null && v > posScore ? ' hi' : ''), text: sc(v),
      title: 'teacher score'});
    line.appendChild(scEl);
    if (v !== null && posScore !== null && posScore > 0) line.appendChild(el('span', {class: 'mu',
      title: 'share of the positive score (percpos compares with this)', text: Math.round(100 * v / posScore) + '% of pos'}));
    line.appendChild(el('span', {class: 'mu', title: 'raw rank in the teacher ranking (positives included)',
      text: rk >= 0 ? 'rank ' + rk : (codes.indexOf(PAD) >= 0 ? 'padded' : 'rank –')}));
    if (s.neg.teacher) line.appendChild(el('span', {class: 'mu', title: 'teacher', text: s.teachers[s.neg.teacher[f]]}));
    var tip = s._tip.get(f);
    codes.forEach(function (c) { line.appendChild(badge(c, tip)); });
    return el('li', {'data-doc': IDS[d]}, line, textBlock(d));
  }

  function column(s, r) {
    var a = s._off[r], b = s._off[r + 1], ps = s.pos_score[r], real = 0;
    for (var f = a; f < b; f++) if ((s._badge.get(f) || []).indexOf(PAD) < 0) real++;
    var head = el('h4', null, s.name + ' ', el('small', {text: 'n=' + s.n + (s.teachers.length === 1 && s.teacher ? ' · ' + s.teacher : '')}));
    var col = el('div', {class: 'col', 'data-set': s.name}, head);
    if (real < s.n) col.appendChild(el('div', {class: 'shortnote', text: 'short of n: ' + real + ' of ' + s.n + ' negatives'}));
    var ol = el('ol', {class: 'negs'});
    for (f = a; f < b; f++) ol.appendChild(negItem(s, f, ps, f - a));
    col.appendChild(ol);
    var rm = removedOf(s, r);
    if (rm.length) {
      var R = s.removed, ul = el('ul');
      rm.forEach(function (i) {
        ul.appendChild(el('li', null, docId(R.doc[i]), ' ', el('b', {text: sc(R.score[i])}), ' rank ' + R.rank[i] + ' ',
          el('span', {class: 'badge removed', text: 'removed by ' + R.filters[R.filter[i]]}), textBlock(R.doc[i])));
      });
      col.appendChild(el('details', {class: 'rm'}, el('summary', {text: rm.length + ' candidate' + (rm.length > 1 ? 's' : '') +
        ' removed by filters above the last negative'}), ul));
    }
    return col;
  }

  function posScores(r) {
    var vals = S.map(function (s) { return s.pos_score[r]; });
    var same = vals.every(function (v) { return v === vals[0]; });
    if (same) return 'score ' + sc(vals[0]);
    return S.map(function (s, i) { return s.name + ': ' + sc(vals[i]); }).join(' · ');
  }

  function renderDetail(qi) {
    var box = ui.detail;
    box.textContent = '';
    if (qi < 0) { box.appendChild(el('p', {class: 'empty', text: 'No query selected.'})); return; }
    var r0 = Q.start[qi], r1 = Q.start[qi + 1];
    box.appendChild(el('h2', {text: Q.text[qi]}));
    box.appendChild(el('div', {class: 'qmeta'}, 'qid ', el('span', {class: 'mono', text: Q.ids[qi]}), ' · ' + (r1 - r0) +
      (r1 - r0 === 1 ? ' positive' : ' positives') + ' · query ' + num(qi + 1) + ' of ' + num(NQ)));
    var kn = known.get(qi);
    if (kn) {
      var ul = el('ul');
      kn.forEach(function (x) {
        var by = [];
        S.forEach(function (s) {
          var where = [];
          for (var r = r0; r < r1; r++) for (var f = s._off[r]; f < s._off[r + 1]; f++) if (s.neg.doc[f] === x.doc) where.push(f - s._off[r] + 1);
          by.push(s.name + (where.length ? ': mined (as #' + where.slice(0, 5).join(', #') + ')' : ': not mined'));
        });
        ul.appendChild(el('li', null, badge(x.badge), ' ', docId(x.doc), ' · ' + by.join(' · '), textBlock(x.doc)));
      });
      box.appendChild(el('div', {class: 'known'}, el('h4', {text: 'Known false negatives of this query'}), ul));
    }
    var shown = Math.min(r1, r0 + st.rowsShown);
    for (var r = r0; r < shown; r++) {
      var p = D.rows.pos[r];
      var cols = el('div', {class: 'cols', style: 'grid-template-columns: repeat(' + S.length + ', minmax(0, 1fr))'});
      S.forEach(function (s) { cols.appendChild(column(s, r)); });
      box.appendChild(el('div', {class: 'prow', 'data-row': String(r)},
        el('div', {class: 'pos'}, el('span', {class: 'lab', text: 'positive'}), docId(p), ' · ' + posScores(r), textBlock(p)),
        cols));
    }
    if (shown < r1) {
      box.appendChild(el('button', {class: 'more', text: 'Show ' + Math.min(ROW_PAGE, r1 - shown) + ' more of ' + (r1 - shown) +
        ' remaining positives', onclick: function () { st.rowsShown += ROW_PAGE; var y = window.scrollY; renderDetail(qi); window.scrollTo(0, y); }}));
    }
  }

  function keys(e) {
    if (e.target && (e.target.tagName === 'INPUT' || e.target.tagName === 'SELECT')) return;
    var d = (e.key === 'ArrowDown' || e.key === 'j') ? 1 : (e.key === 'ArrowUp' || e.key === 'k') ? -1 : 0;
    if (!d || !st.list.length) return;
    e.preventDefault();
    var i = Math.min(st.list.length - 1, Math.max(0, st.list.indexOf(st.sel) + d));
    var page = Math.floor(i / PAGE);
    if (page !== st.page) { st.page = page; renderList(); }
    select(st.list[i]);
    var li = ui.list.querySelector('li.sel');
    if (li && li.scrollIntoView) li.scrollIntoView({block: 'nearest'});
  }

  // ---- start --------------------------------------------------------------------------------------------
  var app = document.getElementById('app');
  app.textContent = '';
  app.appendChild(header());
  var cards = el('div', {class: 'cards'});
  S.forEach(function (s, i) { cards.appendChild(card(s, i)); });
  app.appendChild(el('details', {class: 'sets', open: ''}, el('summary', {text: 'Mined sets: statistics and score distributions (Fig. 4)'}), cards));
  ui.list = el('ul', {class: 'qlist', id: 'qlist'});
  ui.detail = el('section', {class: 'detail', id: 'detail'});
  app.appendChild(el('div', {class: 'main'}, el('aside', null, controls(), ui.list), ui.detail));
  document.addEventListener('keydown', keys);
  st.list = Array.from({length: NQ}, function (_, i) { return i; });
  renderList();
  var start = 0, h = location.hash.match(/^#q=(.*)$/);
  if (h) { var want = decodeURIComponent(h[1]), at = Q.ids.indexOf(want); if (at >= 0) start = at; }
  if (start >= PAGE) { st.page = Math.floor(start / PAGE); renderList(); }
  if (NQ) select(start); else renderDetail(-1);
  window.hardnegBrowse = {ready: true, loadMs: performance.now() - T0, queries: NQ, sets: S.map(function (s) { return s.name; })};
  document.body.setAttribute('data-ready', '1');
})();
