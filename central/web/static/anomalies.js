/* 异常线索: anomaly cases gaming detection opened (GET /api/v1/anomalies, with counts per
   pattern), one case's evidence — its presses resolved with the camera's snapshots, the
   figures against the hall's baseline, p-value and effect (GET /api/v1/anomalies/{id}) — and,
   for supervisors, confirm or dismiss with a note (POST …/decisions, a new record naming the
   decision it replaces). */
(function () {
  'use strict';
  var H = window.HW, t = H.t, el = H.el;
  var mayDecide = !!H.config.may_decide;
  var state = H.query();
  var filters = {
    status: state.status === undefined ? 'open' : state.status, pattern: state.pattern || '',
    hall: state.hall || '', window: state.window || '', staff: state.staff || '',
    first: state.first || '', last: state.last || ''
  };
  var items = [];
  var selected = state.id ? parseInt(state.id, 10) : null;

  function patternLabel(p) {
    var label = t('pattern.' + p);
    return label === 'pattern.' + p ? p : label;
  }
  function fmtP(p) { return p === null || p === undefined ? '—' : (p < 0.0001 ? p.toExponential(1) : p.toFixed(4)); }
  function fmtEffect(a) { return t('anom.effect_value', { name: a.effect_name, value: a.effect.toFixed(2) }); }
  function period(a) {
    return a.period_start === a.period_end ? a.period_start : a.period_start + ' – ' + a.period_end;
  }

  function query() {  // the page's own address keeps 'all' (no status means 'open')
    var p = params();
    if (filters.status === 'all') { p.status = 'all'; }
    return p;
  }

  function params() {
    var p = {};
    Object.keys(filters).forEach(function (k) {
      if (filters[k] !== '' && !(k === 'status' && filters[k] === 'all')) { p[k] = filters[k]; }
    });
    return p;
  }

  function renderCounts(counts) {
    var box = H.clear(document.getElementById('pattern-counts'));
    var sum = 0;
    Object.keys(counts).forEach(function (p) { sum += counts[p]; });
    function chip(p, n, label) {
      return el('button', { type: 'button', class: 'count-chip' + (filters.pattern === p ? ' active' : ''),
        dataset: { pattern: p || 'all' }, onclick: function () { filters.pattern = p; load(); } },
        label, ' ', el('span', { class: 'count-n' }, String(n)));
    }
    box.appendChild(chip('', sum, t('anom.counts.all')));
    Object.keys(counts).sort().forEach(function (p) { box.appendChild(chip(p, counts[p], patternLabel(p))); });
  }

  function renderList() {
    var table = H.clear(document.getElementById('anomalies'));
    table.appendChild(el('thead', null, el('tr', null,
      ['anom.pattern', 'common.hall', 'common.window', 'common.staff', 'anom.period', 'anom.p_value',
        'anom.effect', 'anom.status'].map(function (k) { return el('th', null, t(k)); }))));
    var body = el('tbody');
    if (!items.length) { body.appendChild(H.noData(8)); }
    items.forEach(function (a) {
      body.appendChild(el('tr', { class: 'anomaly-row' + (a.id === selected ? ' selected' : ''),
        dataset: { id: String(a.id), pattern: a.pattern, status: a.status }, tabindex: '0',
        onclick: function () { select(a.id); } },
        el('td', null, patternLabel(a.pattern)), el('td', null, H.hallLabel(a.hall, a.hall_name)),
        el('td', null, a.window === null ? '—' : a.window), el('td', null, a.staff || '—'),
        el('td', null, period(a)), el('td', { class: 'num' }, fmtP(a.p_value)),
        el('td', { class: 'num' }, fmtEffect(a)),
        el('td', null, el('span', { class: 'status ' + a.status }, t('anom.status.' + a.status)))));
    });
    table.appendChild(body);
  }

  function scalar(v) {
    if (v === null || v === undefined) { return '—'; }
    if (Array.isArray(v)) { return v.map(scalar).join(', '); }
    if (typeof v === 'object') { return JSON.stringify(v); }
    if (typeof v === 'number' && !Number.isInteger(v)) { return v.toFixed(3); }
    return String(v);
  }

  /* the detector's figures (timings, baseline comparison, …), press refs shown below instead */
  function figures(evidence) {
    var rows = [];
    Object.keys(evidence).sort().forEach(function (k) {
      if (k === 'presses' || k === 'press_refs') { return; }
      var v = evidence[k];
      if (v && typeof v === 'object' && !Array.isArray(v)) {
        Object.keys(v).sort().forEach(function (s) { rows.push([k + '.' + s, v[s]]); });
      } else { rows.push([k, v]); }
    });
    return el('table', { class: 'data compact', id: 'anom-figures' }, el('tbody', null, rows.map(function (r) {
      return el('tr', { dataset: { name: r[0] } }, el('th', null, r[0]), el('td', { class: 'num' }, scalar(r[1])));
    })));
  }

  function pressTable(presses) {
    var table = el('table', { class: 'data compact', id: 'anom-presses' });
    table.appendChild(el('thead', null, el('tr', null, ['reviews.evaluated_at', 'common.window',
      'common.staff', 'reviews.key', 'reviews.flags', 'reviews.camera', 'anom.snapshot']
      .map(function (k) { return el('th', null, t(k)); }))));
    var body = el('tbody');
    if (!presses.length) { body.appendChild(H.noData(7)); }
    presses.forEach(function (p) {
      body.appendChild(el('tr', { class: 'press', dataset: { gateway: p.gateway, seq: String(p.seq) } },
        el('td', { class: 'when' }, p.at ? H.fmtTime(p.at) : p.gateway + '/' + p.seq),
        el('td', null, p.window === null ? '—' : p.window), el('td', null, p.staff || '—'),
        el('td', null, p.key ? el('span', { class: 'key key-' + p.key }, t('key.' + p.key)) : '—'),
        el('td', null, p.flags.map(function (f) { return el('span', { class: 'flag' }, t('flag.' + f)); })),
        el('td', null, p.citizen ? t('reviews.citizen.' + p.citizen) : '—'),
        el('td', null, p.image_url ? el('a', { href: p.image_url, target: '_blank' },
          el('img', { class: 'snapshot-thumb', src: p.image_url, alt: t('anom.snapshot'), width: '96' })) : '—')));
    });
    table.appendChild(body);
    return el('div', { class: 'table-wrap' }, table);
  }

  function history(decisions) {
    if (!decisions.length) { return el('p', { class: 'muted', id: 'anom-undecided' }, t('anom.undecided')); }
    return el('ol', { class: 'history', id: 'anom-history' }, decisions.map(function (d) {
      return el('li', { class: 'review', dataset: { decision: d.decision } },
        el('span', { class: 'review-id' }, '#' + d.generation),
        el('strong', { class: 'decision ' + d.decision }, t('anom.status.' + d.decision)),
        el('span', { class: 'note' }, '“' + d.note + '”'),
        el('span', { class: 'muted' }, t('reviews.by', { who: d.decided_by, time: H.fmtTime(d.decided_at) })));
    }));
  }

  function decideBox(a) {
    var note = el('input', { type: 'text', id: 'anom-note', class: 'note-input', maxlength: '2000',
      placeholder: t('anom.note'), 'aria-label': t('anom.note') });
    function send(decision) {
      if (!note.value.trim()) { H.notice(t('anom.note_needed'), 'warn'); note.focus(); return; }
      H.api('/api/v1/anomalies/' + a.id + '/decisions', { method: 'POST',
        body: { decision: decision, note: note.value.trim(), supersedes: a.decision_id } })
        .then(function () { H.notice(''); load(); })
        .catch(function (error) {
          if (error.status === 409) { H.notice(t('anom.conflict'), 'warn'); load(); return; }
          H.notice(H.failure(error), 'error');
        });
    }
    return el('div', { class: 'decide' }, note,
      el('button', { type: 'button', class: 'confirm', id: 'anom-confirm',
        onclick: function () { send('confirmed'); } }, t('anom.confirm')),
      el('button', { type: 'button', class: 'dismiss', id: 'anom-dismiss',
        onclick: function () { send('dismissed'); } }, t('anom.dismiss')));
  }

  function renderDetail(a) {
    var box = H.clear(document.getElementById('detail'));
    box.dataset.id = String(a.id);
    box.appendChild(el('h2', null, patternLabel(a.pattern), ' ',
      el('span', { class: 'status ' + a.status, id: 'anom-status' }, t('anom.status.' + a.status))));
    box.appendChild(el('p', { class: 'summary', id: 'anom-summary' }, a.summary));
    box.appendChild(el('dl', { class: 'facts' },
      el('dt', null, t('common.hall')), el('dd', null, H.hallLabel(a.hall, a.hall_name)),
      el('dt', null, t('common.window')), el('dd', null, a.window === null ? '—' : a.window),
      el('dt', null, t('common.staff')), el('dd', null, a.staff || '—'),
      el('dt', null, t('anom.period')), el('dd', null, period(a) + ' · ' + t('anom.kind.' + a.period_kind)),
      el('dt', null, t('anom.method')), el('dd', { id: 'anom-method' }, a.method),
      el('dt', null, t('anom.p_value')), el('dd', { id: 'anom-p' }, fmtP(a.p_value)),
      el('dt', null, t('anom.effect')), el('dd', { id: 'anom-effect' }, fmtEffect(a))));
    box.appendChild(el('h3', null, t('anom.figures')));
    box.appendChild(figures(a.evidence));
    box.appendChild(el('h3', null, t('anom.presses', { n: a.presses.length })));
    box.appendChild(pressTable(a.presses));
    box.appendChild(el('h3', null, t('anom.history')));
    box.appendChild(history(a.decisions));
    if (mayDecide) { box.appendChild(decideBox(a)); }
    else { box.appendChild(el('p', { class: 'muted' }, t('anom.readonly'))); }
    document.body.dataset.detail = String(a.id);
  }

  function select(id) {
    selected = id;
    renderList();
    H.api('/api/v1/anomalies/' + id).then(renderDetail).catch(function (error) {
      H.notice(H.failure(error), 'error');
    });
  }

  function load() {
    document.body.dataset.loaded = '';
    rememberQuery();
    H.api(H.withQuery('/api/v1/anomalies', params())).then(function (page) {
      items = page.items;
      renderCounts(page.counts);
      renderList();
      if (selected !== null && items.some(function (a) { return a.id === selected; })) { select(selected); }
      else { H.clear(document.getElementById('detail')); }
      document.body.dataset.loaded = '1';
    }).catch(function (error) {
      H.notice(H.failure(error), 'error');
      document.body.dataset.loaded = '1';
    });
  }

  function rememberQuery() {
    window.history.replaceState(null, '', H.withQuery('/anomalies', query()));
  }

  ['status', 'hall', 'window', 'staff'].forEach(function (k) {
    document.getElementById('f-' + k).value = filters[k];
  });
  document.getElementById('first').value = filters.first;
  document.getElementById('last').value = filters.last;
  document.getElementById('anom-form').onsubmit = function (event) {
    event.preventDefault();
    ['status', 'hall', 'window', 'staff'].forEach(function (k) {
      filters[k] = document.getElementById('f-' + k).value.trim();
    });
    filters.first = document.getElementById('first').value;
    filters.last = document.getElementById('last').value;
    load();
  };
  load();
})();
