/* Evaluation review: flagged evaluations (GET /api/v1/review-queue); one evaluation's flags,
   camera evidence and review history (GET …/reviews); supervisors confirm or dismiss a flag
   (POST …/reviews, a new record naming the one it replaces). At scale: filters (hall, window,
   staff, key, flag, dates) and counts per flag from GET /api/v1/review-queue/page, pages of
   PAGE_SIZE, a selection (rows on the page or all matching the filter) decided in bulk with one
   note (POST /api/v1/review-queue/decide, ≤ BULK_MAX rows a request), and keys: j/k move, x
   select, c confirm, d dismiss, / filter. */
(function () {
  'use strict';
  var H = window.HW, t = H.t, el = H.el;
  var mayDecide = !!H.config.may_decide;
  var state = H.query();
  var today = H.beijingDate();
  state.last = state.last || today;
  state.first = state.first || H.addDays(state.last, -6);
  var items = [];
  var selected = null;
  var PAGE_SIZE = 100;
  var BULK_MAX = 1000;
  var total = 0;
  var counts = {};
  var chosen = {};  // "gateway/seq" → {gateway, seq}: the rows a bulk decision applies to
  state.offset = Math.max(0, parseInt(state.offset, 10) || 0);
  var filters = { hall: state.hall || '', window: state.window || '', staff: state.staff || '',
    key: state.key || '', flag: state.flag || '' };

  function rowKey(f) { return f.gateway + '/' + f.seq; }
  function chosenCount() { return Object.keys(chosen).length; }
  function cursor() {
    if (!selected) { return -1; }
    return items.findIndex(function (f) {
      return f.gateway === selected.gateway && f.seq === selected.seq; });
  }

  function flagChip(flag, decision) {
    return el('span', { class: 'flag' + (decision ? ' decided ' + decision : ''),
      title: flag, dataset: { flag: flag } }, t('flag.' + flag),
      decision ? el('span', { class: 'flag-decision' },
        ' · ' + t('reviews.decided.' + decision)) : null);
  }

  function allFlags(f) {
    return f.marks.concat(f.flags.filter(function (x) { return f.marks.indexOf(x) < 0; }));
  }

  function toggle(f, on) {
    var k = rowKey(f);
    if (on === undefined) { on = !chosen[k]; }
    if (on) { chosen[k] = { gateway: f.gateway, seq: f.seq }; } else { delete chosen[k]; }
  }

  function renderQueue() {
    var table = H.clear(document.getElementById('queue'));
    table.appendChild(el('thead', null, el('tr', null,
      ['reviews.evaluated_at', 'common.hall', 'common.window', 'reviews.key', 'reviews.flags',
        'reviews.service', 'reviews.camera']
        .map(function (k) { return el('th', null, t(k)); }))));
    var body = el('tbody');
    if (!items.length) { body.appendChild(H.noData(7)); }
    var bulk = bulkAllowed();
    items.forEach(function (f, index) {
      var on = !!chosen[rowKey(f)];
      var box = bulk ? el('input', { type: 'checkbox', class: 'row-check',
        'aria-label': t('reviews.select_row'), checked: on }) : null;
      if (box) {
        box.onclick = function (e) { e.stopPropagation(); toggle(f, box.checked); renderBulk();
          row.classList.toggle('chosen', box.checked); };
      }
      var row = el('tr', { class: 'queue-row' + (f.open_flags.length ? ' open' : ' done') +
        (selected && selected.gateway === f.gateway && selected.seq === f.seq ? ' selected' : '') +
        (on ? ' chosen' : ''),
        dataset: { gateway: f.gateway, seq: String(f.seq) }, tabindex: '0',
        onclick: function () { select(index); } },
        el('td', { class: 'when' }, box, ' ', H.fmtTime(f.at)), el('td', null, H.hallLabel(f.hall, f.hall_name)),
        el('td', null, f.window), el('td', null, el('span', { class: 'key key-' + f.key },
          t('key.' + f.key))),
        el('td', null, allFlags(f).map(function (flag) { return flagChip(flag, f.decisions[flag]); })),
        el('td', { class: 'service' }, f.ticket
          ? t('reviews.ticket', { ticket: f.ticket }) + (f.staff ? ' · ' + H.staffLabel(f.staff, f.staff_name) : '') : '—'),
        el('td', { class: 'camera' }, f.citizen ? t('reviews.citizen.' + f.citizen) : '—'));
      row.onkeydown = function (e) { if (e.key === 'Enter') { select(index); } };
      body.appendChild(row);
    });
    table.appendChild(body);
    renderPager();
    renderBulk();
  }

  function renderCounts() {
    var box = H.clear(document.getElementById('flag-counts'));
    var sum = 0;
    Object.keys(counts).forEach(function (flag) { sum += counts[flag]; });
    function chip(flag, n, label) {
      return el('button', { type: 'button', class: 'count-chip' + (filters.flag === flag ? ' active' : ''),
        dataset: { flag: flag || 'all' }, onclick: function () {
          readForm(); filters.flag = flag; state.offset = 0; go(); } },
        label, ' ', el('span', { class: 'count-n' }, String(n)));
    }
    box.appendChild(chip('', sum, t('reviews.counts.all')));
    Object.keys(counts).sort().forEach(function (flag) {
      box.appendChild(chip(flag, counts[flag], t('flag.' + flag)));
    });
  }

  function renderPager() {
    var box = H.clear(document.getElementById('pager'));
    if (state.show === 'all' || !total) { return; }
    box.appendChild(el('span', { class: 'muted' }, t('reviews.page', {
      from: state.offset + 1, to: state.offset + items.length, total: total })));
    if (state.offset > 0) {
      box.appendChild(el('button', { type: 'button', id: 'prev-page', onclick: function () {
        state.offset = Math.max(0, state.offset - PAGE_SIZE); go(); } }, t('reviews.prev')));
    }
    if (state.offset + items.length < total) {
      box.appendChild(el('button', { type: 'button', id: 'next-page', onclick: function () {
        state.offset += PAGE_SIZE; go(); } }, t('reviews.next')));
    }
  }

  function bulkAllowed() { return mayDecide && state.show !== 'all'; }

  function renderBulk() {
    var bar = document.getElementById('bulk-bar');
    bar.hidden = !bulkAllowed();
    if (bar.hidden) { return; }
    document.getElementById('selected-count').textContent =
      t('reviews.bulk.selected', { n: chosenCount() });
    document.getElementById('select-matching').textContent =
      t('reviews.bulk.select_matching', { n: total });
    var page = document.getElementById('select-page');
    page.checked = items.length > 0 && items.every(function (f) { return !!chosen[rowKey(f)]; });
  }

  /* every row matching the filter, a page of BULK_MAX at a time */
  function selectMatching() {
    function from(offset) {
      return H.api(H.withQuery('/api/v1/review-queue/page', queueParams(offset, BULK_MAX)))
        .then(function (data) {
          data.items.forEach(function (f) { toggle(f, true); });
          if (offset + data.items.length < data.total && data.items.length) {
            return from(offset + data.items.length);
          }
        });
    }
    return from(0).then(renderQueue).catch(function (error) { H.notice(H.failure(error), 'error'); });
  }

  /* the selection, in requests of BULK_MAX rows; with a flag filter only that flag, otherwise
     every flag of each row no one has decided */
  function bulkDecide(decision) {
    var rows = Object.keys(chosen).map(function (k) { return chosen[k]; });
    if (!rows.length) { H.notice(t('reviews.bulk.none'), 'warn'); return; }
    var flag = filters.flag || null;
    if (rows.length > 1 && !window.confirm(t('reviews.bulk.ask', { n: rows.length,
      flag: flag ? t('flag.' + flag) : t('reviews.bulk.all_flags'),
      decision: t('reviews.decided.' + decision) }))) { return; }
    var note = document.getElementById('bulk-note').value.trim();
    var decided = 0, already = 0;
    function send(i) {
      if (i >= rows.length) { return Promise.resolve(); }
      var part = rows.slice(i, i + BULK_MAX).map(function (r) {
        return { gateway: r.gateway, seq: r.seq, flag: flag }; });
      return H.api('/api/v1/review-queue/decide', { method: 'POST',
        body: { rows: part, decision: decision, note: note } }).then(function (out) {
        decided += out.decided.length;
        already += out.already.length;
        part.forEach(function (r) { delete chosen[r.gateway + '/' + r.seq]; });
        return send(i + BULK_MAX);
      });
    }
    send(0).then(function () {
      H.notice(t('reviews.bulk.done', { decided: decided, already: already }), 'info');
      document.body.dataset.bulkDone = String(decided);
      document.getElementById('bulk-note').value = '';
      return reload();
    }).catch(function (error) {
      H.notice(H.failure(error), 'error');
      reload();
    });
  }

  function evidenceBlock(evidence) {
    if (!evidence.length) {
      return el('p', { class: 'muted', id: 'no-evidence' }, t('reviews.no_evidence'));
    }
    return evidence.map(function (v) {
      return el('div', { class: 'evidence verdict-' + v.verdict },
        el('p', { class: 'verdict' }, el('strong', null, t('reviews.verdict.' + v.verdict)),
          ' · ' + Math.round(v.confidence * 100) + '% · ' + v.reason),
        el('dl', { class: 'facts small' },
          el('dt', null, t('reviews.snapshot_hash')),
          el('dd', null, el('code', { class: 'hash snapshot-hash' }, v.snapshot_sha256 || '—')),
          el('dt', null, t('reviews.snapshot_path')),
          el('dd', null, el('code', null, v.snapshot || '—'))),
        v.image_url ? el('img', { src: v.image_url, alt: v.snapshot || '' })
          : el('p', { class: 'muted' }, t('reviews.no_image')));
    });
  }

  function historyFor(flag, reviews) {
    var mine = reviews.filter(function (r) { return r.flag === flag; });
    if (!mine.length) { return el('p', { class: 'muted' }, t('reviews.no_history')); }
    var replacedBy = {};
    mine.forEach(function (r) { if (r.supersedes) { replacedBy[r.supersedes] = r.id; } });
    return el('ol', { class: 'history' }, mine.map(function (r) {
      return el('li', { class: 'review ' + (r.current ? 'current' : 'replaced'),
        dataset: { review: String(r.id), decision: r.decision } },
        el('span', { class: 'review-id' }, '#' + r.id),
        el('strong', { class: 'decision ' + r.decision }, t('reviews.decided.' + r.decision)),
        r.note ? el('span', { class: 'note' }, '“' + r.note + '”') : null,
        el('span', { class: 'muted' }, t('reviews.by', { who: r.reviewer, time: H.fmtTime(r.created_at) })),
        r.current ? el('span', { class: 'badge good' }, t('reviews.current'))
          : el('span', { class: 'badge' }, t('reviews.replaced', { id: replacedBy[r.id] })));
    }));
  }

  function decide(item, flag, decision, current, note) {
    H.api('/api/v1/evaluations/' + encodeURIComponent(item.gateway) + '/' + item.seq + '/reviews', {
      method: 'POST', body: { flag: flag, decision: decision, note: note,
        supersedes: current ? current.id : null }
    }).then(function () {
      H.notice('');
      reload();
    }).catch(function (error) {
      if (error.status === 409) { H.notice(t('reviews.conflict'), 'warn'); reload(); return; }
      H.notice(H.failure(error), 'error');
    });
  }

  function flagBlock(item, flag, reviews) {
    var current = reviews.filter(function (r) { return r.flag === flag && r.current; })[0];
    var block = el('section', { class: 'flag-block', dataset: { flag: flag } },
      el('h3', null, flagChip(flag, current && current.decision), el('code', { class: 'muted' }, flag)),
      historyFor(flag, reviews));
    if (mayDecide) {
      var note = el('input', { type: 'text', class: 'note-input', maxlength: '2000',
        placeholder: t('reviews.note'), 'aria-label': t('reviews.note') });
      block.appendChild(el('div', { class: 'decide' }, note,
        el('button', { type: 'button', class: 'confirm', onclick: function () {
          decide(item, flag, 'confirmed', current, note.value); } }, t('reviews.confirm')),
        el('button', { type: 'button', class: 'dismiss', onclick: function () {
          decide(item, flag, 'dismissed', current, note.value); } }, t('reviews.dismiss'))));
    }
    return block;
  }

  function renderDetail(item, data) {
    var box = H.clear(document.getElementById('detail'));
    box.dataset.gateway = item.gateway;
    box.dataset.seq = String(item.seq);
    box.appendChild(el('h2', null, H.hallLabel(item.hall, item.hall_name),
      ' · ' + t('window.n', { n: item.window }) + ' · ',
      el('span', { class: 'key key-' + item.key }, t('key.' + item.key))));
    box.appendChild(el('dl', { class: 'facts' },
      el('dt', null, t('reviews.evaluated_at')), el('dd', null, H.fmtTime(item.at)),
      el('dt', null, t('reviews.session')), el('dd', null, item.ticket
        ? t('reviews.ticket', { ticket: item.ticket }) +
          (item.staff ? ' · ' + H.staffLabel(item.staff, item.staff_name) : '') : '—'),
      el('dt', null, t('reviews.cases')), el('dd', { class: 'linked-cases' }, item.case_nos.length
        ? item.case_nos.map(function (c) {
          return el('a', { href: '/cases/' + encodeURIComponent(c) }, c); }) : '—'),
      el('dt', null, t('reviews.counted')), el('dd', null, item.counted === null ? '—'
        : t(item.counted ? 'common.yes' : 'common.no')),
      el('dt', null, t('reviews.confidence')), el('dd', null, item.confidence === null ? '—'
        : Math.round(item.confidence * 100) + '%')));
    box.appendChild(el('h3', null, t('reviews.evidence')));
    box.appendChild(el('div', { class: 'evidence-list' }, evidenceBlock(data.evidence)));
    box.appendChild(el('h3', null, t('reviews.history')));
    if (!mayDecide) { box.appendChild(el('p', { class: 'muted' }, t('reviews.readonly'))); }
    data.flags.forEach(function (flag) { box.appendChild(flagBlock(item, flag, data.reviews)); });
    box.dataset.loaded = '1';
  }

  function select(index) {
    selected = items[index];
    renderQueue();
    var item = selected;
    var box = H.clear(document.getElementById('detail'));
    box.appendChild(el('p', { class: 'muted' }, t('common.loading')));
    H.api('/api/v1/evaluations/' + encodeURIComponent(item.gateway) + '/' + item.seq + '/reviews')
      .then(function (data) { if (selected === item) { renderDetail(item, data); } })
      .catch(function (error) { H.notice(H.failure(error), 'error'); });
  }

  /* an evaluation from GET /api/v1/evaluations in the queue's shape (no gateway marks or
     decisions there: the detail view has them) */
  function fromEvaluation(e) {
    return { gateway: e.gateway, seq: e.seq, hall: e.hall, window: e.window, key: e.key,
      at: e.evaluated_at, day: e.business_day, marks: [], flags: e.flags,
      version: e.version, session_id: e.session ? e.session.session_id : null,
      ticket: e.ticket, staff: e.staff,
      case_nos: e.cases.map(function (c) { return c.case_no; }), confidence: e.confidence,
      counted: e.counted, basis: e.basis, citizen: e.citizen, decisions: {},
      open_flags: e.flags };
  }

  function queueParams(offset, limit) {
    return { first: state.first, last: state.last, hall: filters.hall, window: filters.window,
      staff: filters.staff, key: filters.key, flag: filters.flag,
      undecided: state.show === 'undecided' ? 'true' : undefined, offset: offset, limit: limit };
  }

  /* "all" lists every evaluation (not only flagged) from GET /api/v1/evaluations and filters
     here; no bulk decisions there (most rows carry no flag) */
  function matchesHere(f) {
    return (!filters.hall || f.hall === filters.hall) &&
      (!filters.window || String(f.window) === String(filters.window)) &&
      (!filters.staff || f.staff === filters.staff) &&
      (!filters.key || String(f.key) === String(filters.key)) &&
      (!filters.flag || allFlags(f).indexOf(filters.flag) >= 0);
  }

  function fetchItems() {
    if (state.show === 'all') {
      return H.api(H.withQuery('/api/v1/evaluations', { from: state.first, to: state.last,
        limit: 2000 })).then(function (page) {
        var every = page.items.map(fromEvaluation);
        counts = {};
        every.forEach(function (f) {
          var saved = filters.flag;
          filters.flag = '';
          if (matchesHere(f)) {
            allFlags(f).forEach(function (x) { counts[x] = (counts[x] || 0) + 1; });
          }
          filters.flag = saved;
        });
        var shown = every.filter(matchesHere);
        total = shown.length;
        return shown;
      });
    }
    return H.api(H.withQuery('/api/v1/review-queue/page', queueParams(state.offset, PAGE_SIZE)))
      .then(function (page) {
        total = page.total;
        counts = page.counts;
        return page.items;
      });
  }

  function reload() {
    return fetchItems().then(function (data) {
      items = data;
      renderCounts();
      renderQueue();
      document.body.dataset.loaded = '1';
      var again = cursor();
      if (again >= 0) { select(again); } else {
        selected = null;
        H.clear(document.getElementById('detail'));
      }
    }).catch(function (error) { H.notice(H.failure(error), 'error'); });
  }

  function readForm() {
    filters.hall = document.getElementById('f-hall').value.trim();
    filters.window = document.getElementById('f-window').value.trim();
    filters.staff = document.getElementById('f-staff').value.trim();
    filters.key = document.getElementById('f-key').value;
    state.first = document.getElementById('first').value;
    state.last = document.getElementById('last').value;
    state.show = document.getElementById('show').value;
  }

  /* a new filter or page: the URL says it (back and reload keep it); the selection stays */
  function go() {
    history.replaceState(null, '', H.withQuery('/reviews', {
      first: state.first, last: state.last, show: state.show, hall: filters.hall,
      window: filters.window, staff: filters.staff, key: filters.key, flag: filters.flag,
      offset: state.offset || undefined }));
    selected = null;
    H.clear(document.getElementById('detail'));
    return reload();
  }

  /* the current row's evaluation, or the selection if there is one */
  function decideByKey(decision) {
    if (!mayDecide) { return; }
    if (!chosenCount() && selected && bulkAllowed()) { toggle(selected, true); }
    bulkDecide(decision);
  }

  function move(step) {
    if (!items.length) { return; }
    var next = Math.min(items.length - 1, Math.max(0, cursor() + step));
    select(next);
    var row = document.querySelectorAll('#queue tr.queue-row')[next];
    if (row) { row.focus(); row.scrollIntoView({ block: 'nearest' }); }
  }

  document.addEventListener('keydown', function (e) {
    var tag = e.target && e.target.tagName;
    if (e.ctrlKey || e.metaKey || e.altKey) { return; }
    if (tag === 'INPUT' || tag === 'SELECT' || tag === 'TEXTAREA') {
      if (e.key === 'Escape') { e.target.blur(); }
      return;
    }
    if (e.key === 'j') { move(1); } else if (e.key === 'k') { move(-1); } else if (e.key === 'x') {
      var here = cursor();
      if (here >= 0 && bulkAllowed()) { toggle(items[here], undefined); renderQueue(); }
    } else if (e.key === 'c') { decideByKey('confirmed'); } else if (e.key === 'd') {
      decideByKey('dismissed');
    } else if (e.key === '/') {
      document.getElementById('f-hall').focus();
    } else { return; }
    e.preventDefault();
  });

  document.getElementById('first').value = state.first;
  document.getElementById('last').value = state.last;
  state.show = ['flagged', 'undecided', 'all'].indexOf(state.show) >= 0 ? state.show : 'flagged';
  document.getElementById('show').value = state.show;
  document.getElementById('f-hall').value = filters.hall;
  document.getElementById('f-window').value = filters.window;
  document.getElementById('f-staff').value = filters.staff;
  document.getElementById('f-key').value = filters.key;
  document.getElementById('range-form').onsubmit = function (event) {
    event.preventDefault();
    readForm();
    state.offset = 0;
    go();
  };
  document.getElementById('select-page').onchange = function (e) {
    items.forEach(function (f) { toggle(f, e.target.checked); });
    renderQueue();
  };
  document.getElementById('select-matching').onclick = selectMatching;
  document.getElementById('select-none').onclick = function () { chosen = {}; renderQueue(); };
  document.getElementById('bulk-confirm').onclick = function () { bulkDecide('confirmed'); };
  document.getElementById('bulk-dismiss').onclick = function () { bulkDecide('dismissed'); };
  reload();
})();
