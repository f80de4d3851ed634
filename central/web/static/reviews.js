/* Evaluation review: flagged evaluations (GET /api/v1/review-queue); one evaluation's flags,
   camera evidence and review history (GET …/reviews); supervisors confirm or dismiss a flag
   (POST …/reviews, a new record naming the one it replaces). */
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

  function flagChip(flag, decision) {
    return el('span', { class: 'flag' + (decision ? ' decided ' + decision : ''),
      title: flag, dataset: { flag: flag } }, t('flag.' + flag),
      decision ? el('span', { class: 'flag-decision' },
        ' · ' + t('reviews.decided.' + decision)) : null);
  }

  function renderQueue() {
    var table = H.clear(document.getElementById('queue'));
    table.appendChild(el('thead', null, el('tr', null,
      ['reviews.evaluated_at', 'common.hall', 'common.window', 'reviews.key', 'reviews.flags']
        .map(function (k) { return el('th', null, t(k)); }))));
    var body = el('tbody');
    if (!items.length) { body.appendChild(H.noData(5)); }
    items.forEach(function (f, index) {
      var all = f.marks.concat(f.flags.filter(function (x) { return f.marks.indexOf(x) < 0; }));
      var row = el('tr', { class: 'queue-row' + (f.open_flags.length ? ' open' : ' done') +
        (selected && selected.gateway === f.gateway && selected.seq === f.seq ? ' selected' : ''),
        dataset: { gateway: f.gateway, seq: String(f.seq) }, tabindex: '0',
        onclick: function () { select(index); } },
        el('td', null, H.fmtTime(f.at)), el('td', null, f.hall),
        el('td', null, f.window), el('td', null, el('span', { class: 'key key-' + f.key },
          t('key.' + f.key))),
        el('td', null, all.map(function (flag) { return flagChip(flag, f.decisions[flag]); })));
      row.onkeydown = function (e) { if (e.key === 'Enter') { select(index); } };
      body.appendChild(row);
    });
    table.appendChild(body);
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
    box.appendChild(el('h2', null, item.hall + ' · ' + t('window.n', { n: item.window }) + ' · ',
      el('span', { class: 'key key-' + item.key }, t('key.' + item.key))));
    box.appendChild(el('dl', { class: 'facts' },
      el('dt', null, t('reviews.evaluated_at')), el('dd', null, H.fmtTime(item.at)),
      el('dt', null, t('reviews.session')), el('dd', null, item.ticket
        ? t('reviews.ticket', { ticket: item.ticket }) + (item.staff ? ' · ' + item.staff : '') : '—'),
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
      .then(function (data) { renderDetail(item, data); })
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

  function fetchItems() {
    if (state.show === 'all') {
      return H.api(H.withQuery('/api/v1/evaluations', { from: state.first, to: state.last,
        limit: 2000 })).then(function (page) { return page.items.map(fromEvaluation); });
    }
    return H.api(H.withQuery('/api/v1/review-queue', { first: state.first, last: state.last,
      undecided: state.show === 'undecided' ? 'true' : undefined }));
  }

  function reload() {
    return fetchItems().then(function (data) {
      items = data;
      renderQueue();
      document.body.dataset.loaded = '1';
      if (selected) {
        var again = items.findIndex(function (f) {
          return f.gateway === selected.gateway && f.seq === selected.seq; });
        if (again >= 0) { select(again); }
      }
    }).catch(function (error) { H.notice(H.failure(error), 'error'); });
  }

  document.getElementById('first').value = state.first;
  document.getElementById('last').value = state.last;
  state.show = ['flagged', 'undecided', 'all'].indexOf(state.show) >= 0 ? state.show : 'flagged';
  document.getElementById('show').value = state.show;
  document.getElementById('range-form').onsubmit = function (event) {
    event.preventDefault();
    location.assign(H.withQuery('/reviews', {
      first: document.getElementById('first').value, last: document.getElementById('last').value,
      show: document.getElementById('show').value }));
  };
  reload();
})();
