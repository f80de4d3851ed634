/* 抽查回访: a month's sample (GET /api/v1/audits) and its tasks; supervisors draw a month that
   has ended (POST /api/v1/audits/draw), department leaders read their own department's. */
(function () {
  'use strict';
  var H = window.HW, t = H.t, el = H.el;
  var thisMonth = H.beijingDate().slice(0, 7);
  var month = H.query().month || H.addDays(thisMonth + '-01', -1).slice(0, 7);

  function ruleText(d) {
    var parts = [];
    if (d.count !== null) { parts.push(t('audits.rule.count', { n: d.count })); }
    if (d.percent !== null) { parts.push(t('audits.rule.percent', { p: d.percent })); }
    return parts.join(' / ');
  }

  function state(task) {
    if (!task.called) { return el('span', { class: 'badge' }, t('audits.state.open')); }
    return task.reached ? el('span', { class: 'badge good' }, t('audits.state.reached'))
      : el('span', { class: 'badge warn' }, t('audits.state.unreached'));
  }

  function render(data) {
    var s = data.sample;
    document.getElementById('sample-state').textContent = s
      ? t('audits.drawn', { seed: s.seed, time: H.fmtTime(s.drawn_at), by: s.drawn_by })
      : t('audits.not_drawn');
    if (!data.may_work) { H.notice(t('audits.readonly'), 'info'); }
    document.getElementById('draw').hidden = !data.may_work || !!s || month >= thisMonth;

    var sample = H.clear(document.getElementById('audit-sample'));
    sample.appendChild(el('thead', null, el('tr', null, ['common.department', 'audits.population',
      'audits.size', 'audits.rule'].map(function (k) { return el('th', null, t(k)); }))));
    var body = el('tbody');
    var departments = s ? s.departments : [];
    if (!departments.length) { body.appendChild(H.noData(4)); }
    departments.forEach(function (d) {
      body.appendChild(el('tr', { dataset: { department: d.department } },
        el('td', null, d.department), el('td', { class: 'num' }, d.population),
        el('td', { class: 'num size' }, d.size), el('td', null, ruleText(d))));
    });
    sample.appendChild(body);

    var table = H.clear(document.getElementById('audit-tasks'));
    table.appendChild(el('thead', null, el('tr', null, ['common.case', 'common.department',
      'common.hall', 'case.item', 'case.completed_at', 'audits.state', 'audits.findings']
      .map(function (k) { return el('th', null, t(k)); }))));
    var rows = el('tbody');
    if (!data.tasks.length) { rows.appendChild(H.noData(7)); }
    data.tasks.forEach(function (task) {
      rows.appendChild(el('tr', { class: 'audit-task', dataset: { task: String(task.id),
        case: task.case_no } },
        el('td', null, el('a', { href: '/audits/' + task.id }, task.case_no)),
        el('td', null, task.department), el('td', null, task.hall),
        el('td', null, task.item_name), el('td', null, H.fmtTime(task.completed_at)),
        el('td', { class: 'state' }, state(task)),
        el('td', { class: 'findings' }, task.discrepancies.map(function (d) {
          return el('span', { class: 'badge bad' }, t('audit.discrepancy.' + d)); }))));
    });
    table.appendChild(rows);
    document.body.dataset.loaded = '1';
  }

  function load() {
    return H.api(H.withQuery('/api/v1/audits', { month: month })).then(render).catch(function (e) {
      H.notice(H.failure(e), 'error');
      document.body.dataset.loaded = '1';
    });
  }

  document.getElementById('month').value = month;
  document.getElementById('month-form').onsubmit = function (event) {
    event.preventDefault();
    location.assign(H.withQuery('/audits', { month: document.getElementById('month').value }));
  };
  document.getElementById('draw').onclick = function () {
    H.api('/api/v1/audits/draw', { method: 'POST', body: { month: month } }).then(function (s) {
      var n = s.departments.reduce(function (sum, d) { return sum + d.size; }, 0);
      return load().then(function () { H.notice(t('audits.drawn_now', { n: n }), 'info'); });
    }).catch(function (e) { H.notice(H.failure(e), 'error'); });
  };
  load();
})();
