/* Bad-review follow-up board: items by state with deadlines and escalation
   (GET /api/v1/followups, served by the follow-up part of central). */
(function () {
  'use strict';
  var H = window.HW, t = H.t, el = H.el;
  var STATES = ['created', 'assigned', 'verified', 'rectified', 'called_back', 'closed'];
  var EVERY_S = 30;
  var today = H.beijingDate();

  function card(item) {
    var overdue = item.overdue !== undefined ? item.overdue
      : (item.state !== 'closed' && item.due && item.due < today);
    var level = item.escalation_level || 0;
    return el('article', { class: 'fu-card' + (overdue ? ' overdue' : '') + (level ? ' escalated' : ''),
      dataset: { item: item.item_id } },
      el('header', null, el('strong', null, item.hall + ' · ' + t('window.n', { n: item.window })),
        overdue ? el('span', { class: 'badge bad' }, t('followups.overdue')) : null),
      el('div', { class: 'fu-reason' }, t('key.' + item.reason)),
      el('div', { class: 'fu-meta' },
        item.staff ? el('span', null, t('common.staff') + ' ' + item.staff) : null,
        item.case_no ? el('a', { href: '/cases/' + encodeURIComponent(item.case_no) }, item.case_no) : null),
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

  function load() {
    H.api('/api/v1/followups').then(function (data) {
      var items = Array.isArray(data) ? data : (data && data.items) || [];
      render(items);
      H.notice('');
      document.getElementById('status-line').textContent =
        t('common.updated', { time: H.fmtClock() });
    }).catch(function (error) {
      render([]);
      H.notice(H.failure(error), error.status === 404 ? 'info' : 'error');
    }).then(function () {
      document.body.dataset.loaded = '1';
      setTimeout(load, EVERY_S * 1000);
    });
  }
  load();
})();
