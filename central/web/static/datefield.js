/* Date fields that read and write YYYY-MM-DD (YYYY-MM for months) with Chinese month names,
   whatever the browser's locale: <input type="date"> would follow the browser (12/06/2026 in
   an English one). Upgrades every input.date-field: typing stays possible, a click opens a
   small calendar. */
(function () {
  'use strict';

  var MONTHS = ['一月', '二月', '三月', '四月', '五月', '六月', '七月', '八月', '九月', '十月',
    '十一月', '十二月'];
  var WEEKDAYS = ['一', '二', '三', '四', '五', '六', '日'];
  var PATTERNS = { date: /^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$/,
    month: /^\d{4}-(0[1-9]|1[0-2])$/ };

  function pad(n) { return (n < 10 ? '0' : '') + n; }

  function node(tag, cls, text) {
    var n = document.createElement(tag);
    if (cls) { n.className = cls; }
    if (text !== undefined) { n.textContent = text; }
    return n;
  }

  function button(cls, text, label, onClick) {
    var b = node('button', cls, text);
    b.type = 'button';
    if (label) { b.setAttribute('aria-label', label); }
    b.addEventListener('mousedown', function (e) { e.preventDefault(); });
    b.addEventListener('click', onClick);
    return b;
  }

  function today() {
    return new Intl.DateTimeFormat('en-CA', { timeZone: 'Asia/Shanghai', year: 'numeric',
      month: '2-digit', day: '2-digit' }).format(new Date());
  }

  function upgrade(input) {
    var kind = input.dataset.kind === 'month' ? 'month' : 'date';
    var pattern = PATTERNS[kind];
    var popup = null;
    var shown = { year: 0, month: 0 }; /* month 0–11 */

    input.setAttribute('autocomplete', 'off');
    input.setAttribute('inputmode', 'numeric');
    input.setAttribute('placeholder', kind === 'month' ? 'YYYY-MM' : 'YYYY-MM-DD');
    input.setAttribute('maxlength', kind === 'month' ? '7' : '10');

    function check() {
      var ok = input.value === '' || pattern.test(input.value);
      input.setCustomValidity(ok ? '' : (kind === 'month' ? '格式 YYYY-MM' : '格式 YYYY-MM-DD'));
      return ok;
    }

    function pick(value) {
      input.value = value;
      check();
      input.dispatchEvent(new Event('change', { bubbles: true }));
      close();
    }

    function close() {
      if (popup) { popup.remove(); popup = null; }
    }

    function draw() {
      while (popup.firstChild) { popup.removeChild(popup.firstChild); }
      var step = kind === 'month' ? 12 : 1;
      var head = node('div', 'datefield-head');
      head.appendChild(button('datefield-prev', '‹', '上一页', function () { move(-step); }));
      head.appendChild(node('span', 'datefield-title', kind === 'month'
        ? shown.year + '年' : shown.year + '年 ' + MONTHS[shown.month]));
      head.appendChild(button('datefield-next', '›', '下一页', function () { move(step); }));
      popup.appendChild(head);
      var grid = node('div', 'datefield-grid ' + kind);
      if (kind === 'month') {
        MONTHS.forEach(function (name, i) {
          var value = shown.year + '-' + pad(i + 1);
          var b = button('datefield-cell', name, value, function () { pick(value); });
          b.dataset.value = value;
          if (value === input.value) { b.classList.add('selected'); }
          grid.appendChild(b);
        });
      } else {
        WEEKDAYS.forEach(function (w) { grid.appendChild(node('span', 'datefield-weekday', w)); });
        var first = new Date(Date.UTC(shown.year, shown.month, 1));
        var lead = (first.getUTCDay() + 6) % 7; /* Monday first */
        var days = new Date(Date.UTC(shown.year, shown.month + 1, 0)).getUTCDate();
        for (var i = 0; i < lead; i++) { grid.appendChild(node('span', 'datefield-blank')); }
        for (var d = 1; d <= days; d++) {
          var value = shown.year + '-' + pad(shown.month + 1) + '-' + pad(d);
          var b = button('datefield-cell', String(d), value,
            (function (v) { return function () { pick(v); }; })(value));
          b.dataset.value = value;
          if (value === input.value) { b.classList.add('selected'); }
          if (value === today()) { b.classList.add('today'); }
          grid.appendChild(b);
        }
      }
      popup.appendChild(grid);
    }

    function move(months) {
      var m = shown.year * 12 + shown.month + months;
      shown.year = Math.floor(m / 12);
      shown.month = m % 12;
      draw();
    }

    function open() {
      if (popup) { return; }
      var base = pattern.test(input.value) ? input.value : today();
      shown.year = Number(base.slice(0, 4));
      shown.month = Number(base.slice(5, 7)) - 1;
      popup = node('div', 'datefield-popup');
      popup.setAttribute('role', 'dialog');
      input.insertAdjacentElement('afterend', popup);
      draw();
    }

    input.addEventListener('click', open);
    input.addEventListener('focus', open);
    input.addEventListener('blur', function () { check(); close(); });
    input.addEventListener('input', check);
    input.addEventListener('keydown', function (e) { if (e.key === 'Escape') { close(); } });
  }

  Array.prototype.forEach.call(document.querySelectorAll('input.date-field'), upgrade);
})();
