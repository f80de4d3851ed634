/* Monthly bulletin (月度通报): GET /api/v1/bulletin, CSV from /api/v1/bulletin.csv, printable. */
(function () {
  'use strict';
  var H = window.HW, t = H.t, el = H.el;
  var COLUMNS = [
    ['satisfaction_rate', 'rate'], ['evaluations', 'count'], ['bad_reviews', 'sum'],
    ['evaluation_rate', 'rate'], ['on_time_rate', 'rate'], ['avg_handling_days', 'avg'],
    ['overdue_count', 'int'], ['same_day_rate', 'rate'], ['promise_speedup', 'rate'],
    ['avg_wait_minutes', 'avg'], ['staffed_rate', 'rate']
  ];
  var month = H.query().month || H.beijingDate().slice(0, 7);

  function cell(ind, c) {
    if (!ind) { return '—'; }
    if (c[1] === 'rate') { return H.rate(ind[c[0]]); }
    if (c[1] === 'avg') { return H.avg(ind[c[0]]); }
    if (c[1] === 'count') { return ind.satisfaction_rate.denominator; }
    if (c[1] === 'sum') {
      return Object.keys(ind.bad_reviews).reduce(function (n, k) { return n + ind.bad_reviews[k]; }, 0);
    }
    return ind[c[0]];
  }

  function indicatorTable(id, groups, nameOf, nameHeader) {
    var table = el('table', { class: 'data', id: id });
    table.appendChild(el('thead', null, el('tr', null, el('th', null, nameHeader),
      el('th', null, t('bulletin.rank.satisfaction')), el('th', null, t('bulletin.rank.on_time')),
      COLUMNS.map(function (c) {
        return el('th', c[0] === 'staffed_rate' ? { title: t('analysis.staffed_cover.title') }
          : null, t('ind.' + c[0]));
      }))));
    var body = el('tbody');
    if (!groups.length) { body.appendChild(H.noData(COLUMNS.length + 3)); }
    groups.forEach(function (g) {
      body.appendChild(el('tr', null, el('td', null, nameOf(g)),
        el('td', { class: 'rank' }, g.satisfaction_rank === null ? '—' : g.satisfaction_rank),
        el('td', { class: 'rank' }, g.on_time_rank === null ? '—' : g.on_time_rank),
        COLUMNS.map(function (c) { return el('td', { class: 'num' }, cell(g.indicators, c)); })));
    });
    table.appendChild(body);
    return el('div', { class: 'table-wrap' }, table);
  }

  function simpleTable(id, headers, rows) {
    var table = el('table', { class: 'data', id: id });
    table.appendChild(el('thead', null, el('tr', null, headers.map(function (h) {
      return el('th', null, t(h)); }))));
    var body = el('tbody');
    if (!rows.length) { body.appendChild(H.noData(headers.length)); }
    rows.forEach(function (r) { body.appendChild(el('tr', null, r.map(function (c) {
      return el('td', null, c === null || c === undefined || c === '' ? '—' : c); }))); });
    table.appendChild(body);
    return el('div', { class: 'table-wrap' }, table);
  }

  function render(b) {
    var doc = H.clear(document.getElementById('bulletin'));
    doc.appendChild(el('header', { class: 'bulletin-head' },
      el('h1', { id: 'bulletin-heading' }, t('bulletin.heading', { month: b.month })),
      el('p', null, t('bulletin.period', { first: b.first, last: b.last }) + ' · ' +
        t('bulletin.generated', { time: H.fmtTime(b.generated_at) }))));
    if (!b.correlated) { doc.appendChild(el('p', { class: 'notice info' }, t('common.nodata.correlation'))); }

    doc.appendChild(el('h2', null, t('bulletin.overall')));
    doc.appendChild(el('dl', { class: 'overall' }, COLUMNS.map(function (c) {
      return el('div', null, el('dt', null, t('ind.' + c[0])), el('dd', null, cell(b.overall, c)));
    })));
    var cover = b.overall && b.overall.staffed_coverage;
    if (cover) {
      doc.appendChild(el('p', { class: 'muted', id: 'bulletin-staffed-coverage',
        title: t('analysis.staffed_cover.title') }, t('ind.staffed_rate') + '：' +
        t('analysis.staffed_cover', { covered: Math.round(cover.numerator),
          opening: Math.round(cover.denominator) })));
    }

    doc.appendChild(el('h2', null, t('bulletin.halls')));
    doc.appendChild(indicatorTable('bulletin-halls', b.halls, function (g) {
      return H.hallLabel(g.hall, g.hall_name); }, t('common.hall')));
    doc.appendChild(el('h2', null, t('bulletin.departments')));
    doc.appendChild(indicatorTable('bulletin-departments', b.departments, function (g) {
      return g.department + ' (' + (g.hall_name || g.hall) + ')'; }, t('common.department')));

    doc.appendChild(el('h2', null, t('bulletin.bad_reviews')));
    doc.appendChild(simpleTable('bulletin-bad-reviews',
      ['reviews.evaluated_at', 'common.hall', 'common.window', 'common.staff',
        'followups.reason', 'reviews.cases', 'bulletin.followup'],
      b.bad_reviews.map(function (r) {
        return [H.fmtTime(r.evaluated_at), H.hallLabel(r.hall, r.hall_name), r.window, H.staffLabel(r.staff, r.staff_name),
          t('key.' + r.key),
          r.case_nos.join(' '), r.followup_state ? t('fu.' + r.followup_state) +
            (r.followup_due ? ' · ' + t('followups.due', { date: r.followup_due }) : '') : ''];
      })));
    if (b.bad_reviews_cut) { doc.appendChild(el('p', { class: 'muted' }, t('bulletin.cut', { n: b.bad_reviews.length }))); }

    doc.appendChild(el('h2', null, t('bulletin.overdue')));
    doc.appendChild(simpleTable('bulletin-overdue',
      ['common.case', 'case.item', 'common.department', 'common.hall', 'case.deadline',
        'case.days_over', 'case.completed_at', 'case.stage'],
      b.overdue_cases.map(function (c) {
        return [el('a', { href: '/cases/' + encodeURIComponent(c.case_no) }, c.case_no), c.item_name,
          c.department, H.hallLabel(c.hall, c.hall_name), c.deadline, c.days_over,
          c.completed_at ? H.fmtTime(c.completed_at) : '', c.stage_label];
      })));
    if (b.overdue_cases_cut) { doc.appendChild(el('p', { class: 'muted' }, t('bulletin.cut', { n: b.overdue_cases.length }))); }

    doc.appendChild(el('h2', null, t('bulletin.gaming')));
    doc.appendChild(simpleTable('bulletin-gaming',
      ['common.hall', 'common.window', 'common.staff', 'anom.pattern', 'bulletin.gaming.period',
        'anom.p_value', 'bulletin.gaming.confirmed_at', 'bulletin.gaming.note'],
      b.gaming.map(function (g) {
        return [H.hallLabel(g.hall, g.hall_name), g.window, H.staffLabel(g.staff, g.staff_name),
          el('a', { href: '/anomalies?status=all&id=' + g.id, title: g.summary }, t('pattern.' + g.pattern)),
          g.period_start === g.period_end ? g.period_start : g.period_start + ' – ' + g.period_end,
          g.p_value === null ? '' : g.p_value.toPrecision(2), H.fmtTime(g.confirmed_at), g.note];
      })));
    auditSection(doc, b.audits);

    doc.appendChild(el('h2', null, t('bulletin.complaints')));
    doc.appendChild(simpleTable('bulletin-complaints',
      ['common.department', 'complaints.kpi.received', 'complaint.state.rejected',
        'complaints.kpi.overdue', 'complaints.kpi.on_time'],
      (b.complaints || []).map(function (c) {
        return [c.group || t('complaints.triage'), c.received, c.rejected, c.overdue,
          c.on_time_rate === null ? '' : (c.on_time_rate * 100).toFixed(1) + '% (' +
            c.on_time + '/' + c.due + ')'];
      })));
    document.body.dataset.loaded = '1';
  }

  /* 抽查回访: the month's sample per department, completed call-backs, findings */
  function auditSection(doc, a) {
    doc.appendChild(el('h2', null, t('bulletin.audits')));
    if (!a || !a.drawn) {
      doc.appendChild(el('p', { class: 'muted', id: 'bulletin-audits-none' }, t('bulletin.audits.not_drawn')));
      return;
    }
    doc.appendChild(el('p', { class: 'muted' }, t('bulletin.audits.seed', { seed: a.seed })));
    doc.appendChild(simpleTable('bulletin-audits',
      ['common.department', 'audits.population', 'audits.size', 'bulletin.audits.called',
        'bulletin.audits.reached', 'bulletin.audits.discrepancies', 'bulletin.audits.cases'],
      a.departments.map(function (d) {
        return [d.department, d.population, d.sampled, d.called, d.reached, d.discrepancies,
          d.case_nos.join(' ')];
      })));
  }

  ['indicators', 'bad_reviews', 'overdue', 'gaming', 'audits', 'complaints'].forEach(function (part) {
    document.getElementById('csv-' + part).href = H.withQuery('/api/v1/bulletin.csv',
      { month: month, part: part, lang: H.lang });
  });
  document.getElementById('month').value = month;
  document.getElementById('month-form').onsubmit = function (event) {
    event.preventDefault();
    location.assign(H.withQuery('/bulletin', { month: document.getElementById('month').value }));
  };
  document.getElementById('print').onclick = function () { window.print(); };
  H.api(H.withQuery('/api/v1/bulletin', { month: month })).then(render).catch(function (error) {
    H.notice(H.failure(error), 'error');
    document.body.dataset.loaded = '1';
  });
})();
