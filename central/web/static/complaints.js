/* Complaints (网上投诉): the list within the caller's scope (GET /api/v1/complaints, filtered by
   state, hall, staff, case; the case, hall and staff views link here with those filters),
   投诉数 and 投诉按时办结率 this month (GET /api/v1/complaints/stats), one complaint with its
   history and its next step (POST …/accept|reject|handle|reply|close; 归口 …/route for
   supervisors). Everything citizens typed goes in as text nodes, never as markup. */
(function () {
  'use strict';
  var H = window.HW, t = H.t, el = H.el;
  var NEXT = {
    pending: [['accept', 'complaints.do.accept'], ['reject', 'complaints.do.reject']],
    accepted: [['handle', 'complaints.do.handle'], ['reply', 'complaints.do.reply']],
    handling: [['reply', 'complaints.do.reply']],
    replied: [['close', 'complaints.do.close']]
  };
  var selected = H.query().number || null;
  var filters = { state: 'open', hall: '', staff: '', case_no: '' };

  function params() {
    var p = { hall: filters.hall, staff: filters.staff, case_no: filters.case_no };
    if (filters.state === 'open') { p.open = 'true'; } else if (filters.state) { p.state = filters.state; }
    return p;
  }

  function renderKpis(stat, count) {
    var box = H.clear(document.getElementById('complaint-kpis'));
    var rate = stat && stat.on_time_rate !== null ? (stat.on_time_rate * 100).toFixed(1) + '%' : '—';
    [['complaints.kpi.listed', count, ''],
      ['complaints.kpi.received', stat ? stat.received : '—', t('complaints.kpi.month')],
      ['complaints.kpi.on_time', rate, stat ? stat.on_time + ' / ' + stat.due : ''],
      ['complaints.kpi.overdue', stat ? stat.overdue : '—', '']
    ].forEach(function (k, i) {
      box.appendChild(el('div', { class: 'kpi', id: 'complaint-kpi-' + i },
        el('div', { class: 'kpi-label' }, t(k[0])), el('div', { class: 'kpi-value' }, String(k[1])),
        el('div', { class: 'kpi-sub' }, k[2])));
    });
  }

  function renderList(page) {
    var table = H.clear(document.getElementById('complaints'));
    table.appendChild(el('thead', null, el('tr', null, ['complaint.number', 'complaints.received',
      'common.hall', 'common.staff', 'common.department', 'complaint.state', 'complaint.reply_due']
      .map(function (k) { return el('th', null, t(k)); }))));
    var body = el('tbody');
    if (!page.items.length) { body.appendChild(H.noData(7)); }
    page.items.forEach(function (c) {
      body.appendChild(el('tr', { class: 'complaint' + (c.overdue ? ' overdue' : '') +
        (selected === c.complaint_no ? ' selected' : ''), tabindex: '0',
        dataset: { number: c.complaint_no, state: c.state },
        onclick: function () { open(c.complaint_no); } },
        el('td', null, c.complaint_no), el('td', null, H.fmtTime(c.received_at)),
        el('td', null, c.hall ? H.hallLabel(c.hall, c.hall_name) : '—'),
        el('td', null, H.staffLabel(c.staff, c.staff_name)),
        el('td', null, c.department || el('span', { class: 'badge warn' }, t('complaints.triage'))),
        el('td', null, t('complaint.state.' + c.state)),
        el('td', { class: c.overdue ? 'bad' : '' }, c.reply_due +
          (c.overdue ? ' · ' + t('complaints.overdue') : ''))));
    });
    table.appendChild(body);
  }

  function fact(label, value) {
    return [el('dt', null, t(label)), el('dd', null, value === null || value === undefined ||
      value === '' ? '—' : value)];
  }

  function act(c, action, note, department) {
    var path = '/api/v1/complaints/' + encodeURIComponent(c.complaint_no) + '/' + action;
    var body = { note: note };
    if (action === 'route') { body.department = department; }
    H.api(path, { method: 'POST', body: body }).then(function () { H.notice(''); load(); })
      .catch(function (error) { H.notice(H.failure(error), 'error'); });
  }

  function renderDetail(detail) {
    var c = detail.complaint;
    var box = H.clear(document.getElementById('complaint-detail'));
    box.dataset.number = c.complaint_no;
    box.appendChild(el('h2', null, c.complaint_no, ' ',
      el('span', { class: 'badge', id: 'complaint-state' }, t('complaint.state.' + c.state))));
    box.appendChild(el('p', { class: 'complaint-text', id: 'complaint-text' }, c.text));
    var facts = el('dl', { class: 'facts' });
    [fact('complaints.channel', t('complaints.channel.' + c.channel)),
      fact('common.hall', c.hall ? H.hallLabel(c.hall, c.hall_name) : null),
      fact('common.window', c.window),
      fact('common.staff', c.staff ? H.staffLabel(c.staff, c.staff_name) : c.staff_name_given),
      fact('common.case', c.case_no ? el('a', { href: '/cases/' + encodeURIComponent(c.case_no) },
        c.case_no) : c.case_ref),
      fact('common.department', c.department || t('complaints.triage')),
      fact('complaint.field.name', c.complainant),
      fact('complaint.field.phone', c.phone_masked ? c.phone_masked +
        (c.consent ? ' · ' + t('complaints.consented') : '') : null),
      fact('complaint.ack_due', c.ack_due + (c.ack_overdue ? ' · ' + t('complaints.overdue') : '')),
      fact('complaint.reply_due', c.reply_due + (c.overdue ? ' · ' + t('complaints.overdue') : '')),
      fact('followups.escalation_label', c.escalation_level),
      fact('complaint.reply', c.reply), fact('complaint.reject_reason', c.reject_reason)
    ].forEach(function (pair) { pair.forEach(function (n) { facts.appendChild(n); }); });
    box.appendChild(facts);
    box.appendChild(el('h3', null, t('followups.history')));
    box.appendChild(el('ol', { class: 'history' }, detail.events.map(function (e) {
      return el('li', { class: 'complaint-event', dataset: { action: e.action } },
        el('strong', null, t('complaints.action.' + e.action)),
        e.note ? el('span', { class: 'note' }, '“' + e.note + '”') : null,
        el('span', { class: 'muted' }, t('reviews.by', { who: e.actor || '—', time: H.fmtTime(e.at) })));
    })));
    var next = (NEXT[c.state] || []).slice();
    var routes = H.config.may_route && ['pending', 'accepted', 'handling'].indexOf(c.state) >= 0;
    if (!next.length && !routes) { return; }
    var note = el('textarea', { class: 'note-input', id: 'complaint-note', maxlength: '2000',
      rows: '3', placeholder: t('complaints.note'), 'aria-label': t('complaints.note') });
    var department = el('input', { type: 'text', id: 'complaint-department', maxlength: '128',
      placeholder: t('common.department'), 'aria-label': t('common.department') });
    box.appendChild(el('div', { class: 'decide' }, note, next.map(function (s) {
      return el('button', { type: 'button', class: 'step', dataset: { action: s[0] },
        onclick: function () { act(c, s[0], note.value); } }, t(s[1]));
    }), routes ? [department, el('button', { type: 'button', class: 'step', dataset: { action: 'route' },
      onclick: function () { act(c, 'route', note.value, department.value); } },
      t('complaints.do.route'))] : null));
  }

  function open(number) {
    selected = number;
    document.querySelectorAll('tr.complaint').forEach(function (r) {
      r.classList.toggle('selected', r.dataset.number === number);
    });
    return H.api('/api/v1/complaints/' + encodeURIComponent(number)).then(renderDetail)
      .catch(function (error) { H.notice(H.failure(error), 'error'); });
  }

  function load() {
    var today = H.beijingDate();
    var month = today.slice(0, 8) + '01';
    return Promise.all([
      H.api(H.withQuery('/api/v1/complaints', params())),
      H.api(H.withQuery('/api/v1/complaints/stats', { from: month, to: today, hall: filters.hall }))
    ]).then(function (got) {
      renderList(got[0]);
      renderKpis(got[1][0], got[0].count);
      return selected ? open(selected) : null;
    }).catch(function (error) { H.notice(H.failure(error), 'error'); })
      .then(function () { document.body.dataset.loaded = '1'; });
  }

  var form = document.getElementById('complaints-form');
  var q = H.query();
  Object.keys(filters).forEach(function (k) {
    if (q[k] !== undefined) { filters[k] = q[k]; }
  });
  document.getElementById('f-state').value = filters.state;
  document.getElementById('f-hall').value = filters.hall;
  document.getElementById('f-staff').value = filters.staff;
  document.getElementById('f-case').value = filters.case_no;
  form.onsubmit = function (event) {
    event.preventDefault();
    filters = { state: form.state.value, hall: form.hall.value.trim(),
      staff: form.staff.value.trim(), case_no: form.case_no.value.trim() };
    load();
  };
  load();
})();
