/* One audit task (GET /api/v1/audits/tasks/{id}): the case's record, its evaluations with the
   camera evidence, the call-backs so far; supervisors enter the next call-back (POST …/callbacks). */
(function () {
  'use strict';
  var H = window.HW, t = H.t, el = H.el;
  var taskId = H.config.task_id;
  var QUESTIONS = ['handled', 'timing', 'evaluation', 'satisfied'];

  function fact(label, value) {
    return [el('dt', null, t(label)), el('dd', null, value === null || value === undefined ||
      value === '' ? '—' : value)];
  }

  function answer(value) { return value ? t('audit.answer.' + value) : '—'; }

  function findings(list) {
    if (!list.length) { return el('span', { class: 'muted' }, t('audit.no_discrepancy')); }
    return list.map(function (d) { return el('span', { class: 'badge bad' }, t('audit.discrepancy.' + d)); });
  }

  function record(c) {
    var lad = c.ladder || {};
    var limit = [t('case.legal_days', { n: c.legal_days })];
    if (c.promised_days !== null) { limit.push(t('case.promised_days', { n: c.promised_days })); }
    var facts = H.clear(document.getElementById('audit-facts'));
    [
      fact('common.case', el('a', { href: '/cases/' + encodeURIComponent(c.case_no) }, c.case_no)),
      fact('case.item', c.item_name + ' (' + c.item_code + ')'),
      fact('common.department', c.department),
      fact('common.hall', H.hallLabel(c.hall, c.hall_name)),
      fact('common.window', c.window),
      fact('common.staff', c.staff ? H.staffLabel(c.staff, c.staff_name) : null),
      fact('case.status', t('status.' + c.status)),
      fact('case.accepted_at', H.fmtTime(c.accepted_at)),
      fact('case.completed_at', c.completed_at ? H.fmtTime(c.completed_at) : null),
      fact('case.limit', limit.join(' · ')),
      fact('case.stage', lad.stage ? el('span', { class: 'stage stage-' + lad.stage, id: 'audit-stage' },
        lad.label) : null),
      fact('case.applicant', c.applicant ? el('span', { id: 'audit-applicant' }, c.applicant) : null)
    ].forEach(function (pair) { pair.forEach(function (n) { facts.appendChild(n); }); });
  }

  function evaluations(list) {
    var box = H.clear(document.getElementById('audit-evaluations'));
    if (!list.length) { box.appendChild(el('p', { class: 'no-data' }, t('common.nodata'))); }
    list.forEach(function (e) {
      box.appendChild(el('div', { class: 'audit-evaluation', dataset: { gateway: e.gateway,
        seq: String(e.seq) } },
        el('p', null, H.fmtTime(e.evaluated_at), ' · ', t('window.n', { n: e.window }), ' · ',
          el('span', { class: 'key key-' + e.key }, t('key.' + e.key)),
          e.flags.length ? [' · ', e.flags.map(function (f) {
            return el('span', { class: 'flag' }, t('flag.' + f)); })] : null),
        e.evidence.map(function (v) {
          return el('figure', { class: 'evidence' },
            v.image_url ? el('a', { href: v.image_url, target: '_blank' },
              el('img', { src: v.image_url, alt: v.snapshot || '', class: 'thumb' }))
              : el('p', { class: 'muted' }, t('reviews.no_image')),
            el('figcaption', null, t('reviews.verdict.' + v.verdict) + ' · ' + v.reason));
        })));
    });
  }

  function callbacks(list) {
    var table = H.clear(document.getElementById('audit-callbacks'));
    table.appendChild(el('thead', null, el('tr', null, ['audit.entered_at', 'audit.reached']
      .concat(QUESTIONS.map(function (q) { return 'audit.' + q; }), ['audit.note', 'audits.findings'])
      .map(function (k) { return el('th', null, t(k)); }))));
    var body = el('tbody');
    if (!list.length) { body.appendChild(H.noData(8)); }
    list.forEach(function (c) {
      body.appendChild(el('tr', { class: 'callback' },
        el('td', null, t('audit.entered', { time: H.fmtTime(c.entered_at), by: c.entered_by })),
        el('td', null, t(c.reached ? 'common.yes' : 'common.no')),
        QUESTIONS.map(function (q) { return el('td', null, answer(c[q])); }),
        el('td', null, c.note || '—'), el('td', { class: 'findings' }, findings(c.discrepancies))));
    });
    table.appendChild(body);
  }

  function render(data) {
    record(data.case);
    evaluations(data.evaluations);
    callbacks(data.callbacks);
    document.getElementById('callback-panel').hidden = !data.may_work;
    if (!data.may_work) { H.notice(t('audits.readonly'), 'info'); }
    document.body.dataset.loaded = '1';
  }

  function load() {
    return H.api('/api/v1/audits/tasks/' + taskId).then(render).catch(function (e) {
      H.notice(H.failure(e), 'error');
      document.body.dataset.loaded = '1';
    });
  }

  var reached = document.getElementById('cb-reached');
  reached.onchange = function () {
    QUESTIONS.forEach(function (q) {
      var field = document.getElementById('cb-' + q);
      field.disabled = !reached.checked;
      if (!reached.checked) { field.value = ''; }
    });
  };
  document.getElementById('callback-form').onsubmit = function (event) {
    event.preventDefault();
    var body = { reached: reached.checked, note: document.getElementById('cb-note').value };
    QUESTIONS.forEach(function (q) {
      var value = document.getElementById('cb-' + q).value;
      if (reached.checked && value) { body[q] = value; }
    });
    H.api('/api/v1/audits/tasks/' + taskId + '/callbacks', { method: 'POST', body: body })
      .then(function () {
        document.getElementById('callback-form').reset();
        reached.onchange();
        return load();
      }).then(function () {
        H.notice(t('audit.saved'), 'info');
        document.body.dataset.saved = String(Number(document.body.dataset.saved || 0) + 1);
      }).catch(function (e) { H.notice(H.failure(e), 'error'); });
  };
  load();
})();
