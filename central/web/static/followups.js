/* Bad-review follow-up board (差评整改): items by state with deadlines, overdue and escalation
   (GET /api/v1/followups); one item's history and its next step (POST …/assign|verify|
   rectify|call-back|close, which the follow-up service checks against its state machine). */
(function () {
  'use strict';
  var H = window.HW, t = H.t, el = H.el;
  var STATES = ['created', 'assigned', 'verified', 'rectified', 'called_back', 'closed'];
  var EVERY_S = 30;
  var selected = null;
  var timer = null;

  function card(item) {
    var level = item.escalation_level || 0;
    return el('article', { class: 'fu-card' + (item.overdue ? ' overdue' : '') +
      (level ? ' escalated' : '') + (selected === item.item_id ? ' selected' : ''),
      dataset: { item: item.item_id }, tabindex: '0', onclick: function () { open(item.item_id); } },
      el('header', null, el('strong', null, H.hallLabel(item.hall, item.hall_name),
        ' · ' + t('window.n', { n: item.window })),
        item.overdue ? el('span', { class: 'badge bad' }, t('followups.overdue')) : null),
      el('div', { class: 'fu-reason' }, t('key.' + item.reason)),
      el('div', { class: 'fu-meta' },
        item.department ? el('span', null, item.department) : null,
        item.staff ? el('span', null, t('common.staff') + ' ' + H.staffLabel(item.staff, item.staff_name)) : null,
        item.case_no ? el('span', null, item.case_no) : null),
      el('div', { class: 'fu-due' }, t('followups.due', { date: item.due }),
        level ? el('span', { class: 'badge warn' }, t('followups.escalation', { level: level })) : null),
      item.assignee ? el('div', { class: 'fu-meta' }, t('followups.assignee', { name: item.assignee })) : null);
  }

  function render(items) {
    var board = H.clear(document.getElementById('board'));
    STATES.forEach(function (state) {
      var mine = items.filter(function (i) { return i.state === state; });
      var column = el('section', { class: 'fu-column', dataset: { state: state } },
        el('h2', null, t('fu.' + state), el('span', { class: 'count' }, mine.length)));
      if (!mine.length) { column.appendChild(el('p', { class: 'no-data' }, t('common.nodata'))); }
      mine.forEach(function (i) { column.appendChild(card(i)); });
      board.appendChild(column);
    });
  }

  /* the steps the state machine allows next, with what each needs */
  function steps(item) {
    switch (item.state) {
      case 'created': return [['assign', 'followups.do.assign', { assignee: true }]];
      case 'assigned': return [['verify', 'followups.do.founded', { founded: true }],
        ['verify', 'followups.do.unfounded', { founded: false }]];
      case 'verified': return item.founded === false
        ? [['call-back', 'followups.do.call_back', {}]]
        : [['rectify', 'followups.do.rectify', {}]];
      case 'rectified': return [['call-back', 'followups.do.call_back', {}]];
      case 'called_back': return [['close', 'followups.do.close', {}]];
      default: return [];
    }
  }

  function act(item, action, extra, note, assignee) {
    var body = { note: note };
    if (extra.assignee) { body.assignee = assignee; }
    if (extra.founded !== undefined) { body.founded = extra.founded; }
    H.api('/api/v1/followups/' + encodeURIComponent(item.item_id) + '/' + action,
      { method: 'POST', body: body })
      .then(function () { H.notice(''); load(); })
      .catch(function (error) { H.notice(H.failure(error), 'error'); });
  }

  function renderDetail(detail) {
    var item = detail.item;
    var box = H.clear(document.getElementById('fu-detail'));
    box.hidden = false;
    box.dataset.item = item.item_id;
    box.appendChild(el('h2', null, H.hallLabel(item.hall, item.hall_name),
      ' · ' + t('window.n', { n: item.window }) + ' · ' +
      t('key.' + item.reason), el('span', { class: 'badge' }, t('fu.' + item.state))));
    box.appendChild(el('dl', { class: 'facts' },
      el('dt', null, t('reviews.evaluated_at')), el('dd', null, H.fmtTime(item.evaluated_at)),
      el('dt', null, t('common.case')), el('dd', null, item.case_no
        ? el('a', { href: '/cases/' + encodeURIComponent(item.case_no) }, item.case_no) : '—'),
      el('dt', null, t('followups.due_label')), el('dd', { class: item.overdue ? 'bad' : '' },
        item.due + (item.overdue ? ' · ' + t('followups.overdue') : '')),
      el('dt', null, t('followups.escalation_label')), el('dd', null, item.escalation_level)));
    box.appendChild(el('h3', null, t('followups.history')));
    box.appendChild(el('ol', { class: 'history' }, detail.events.map(function (e) {
      return el('li', { class: 'fu-event', dataset: { kind: e.kind } },
        el('strong', null, t('fu.' + e.state)),
        e.level ? el('span', { class: 'badge warn' }, t('followups.escalation', { level: e.level })) : null,
        e.assignee ? el('span', null, t('followups.assignee', { name: e.assignee })) : null,
        e.note ? el('span', { class: 'note' }, '“' + e.note + '”') : null,
        el('span', { class: 'muted' }, t('reviews.by', { who: e.actor || '—', time: H.fmtTime(e.at) })));
    })));
    var next = steps(item);
    if (!next.length) { return; }
    var note = el('input', { type: 'text', class: 'note-input', maxlength: '2000',
      placeholder: t('followups.note'), 'aria-label': t('followups.note') });
    var assignee = el('input', { type: 'text', class: 'assignee-input', maxlength: '128',
      placeholder: t('followups.assignee_label'), 'aria-label': t('followups.assignee_label') });
    var needsAssignee = next.some(function (s) { return s[2].assignee; });
    box.appendChild(el('div', { class: 'decide' }, needsAssignee ? assignee : null, note,
      next.map(function (s) {
        return el('button', { type: 'button', class: 'step', dataset: { action: s[0] },
          onclick: function () { act(item, s[0], s[2], note.value, assignee.value); } }, t(s[1]));
      })));
  }

  function open(id) {
    selected = id;
    H.api('/api/v1/followups/' + encodeURIComponent(id)).then(renderDetail)
      .catch(function (error) { H.notice(H.failure(error), 'error'); });
    document.querySelectorAll('.fu-card').forEach(function (c) {
      c.classList.toggle('selected', c.dataset.item === id);
    });
  }

  function load() {
    clearTimeout(timer);
    H.api('/api/v1/followups').then(function (data) {
      render(Array.isArray(data) ? data : (data && data.items) || []);
      H.notice('');
      document.getElementById('status-line').textContent =
        t('common.updated', { time: H.fmtClock() }) + ' · ' +
        t('common.refresh_every', { seconds: EVERY_S });
      if (selected) { open(selected); }
    }).catch(function (error) {
      render([]);
      H.notice(H.failure(error), error.status === 404 ? 'info' : 'error');
    }).then(function () {
      document.body.dataset.loaded = '1';
      timer = setTimeout(load, EVERY_S * 1000);
    });
  }
  load();
})();
