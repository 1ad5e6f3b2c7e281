// Live conversations and playground: keeps the server-rendered page current over websockets.
// /ws/inbox/ updates the conversation list; /ws/conversations/<id>/ the open pane. Frames the
// server sends: {"type": "event", "kind": ...}, {"type": "ack"}, {"type": "error"}, {"type": "pong"}.
(function () {
  "use strict";

  var TICKS = { received: "", queued: "🕓", sent: "✓", delivered: "✓✓", read: "✓✓", failed: "⚠ failed" };

  function socketUrl(path) {
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;
  }

  // A socket that reconnects with backoff; `onFrame` gets every parsed frame.
  function liveSocket(path, onFrame, onState) {
    var socket = null, delay = 500, closedByServer = false, api = {};
    function open() {
      socket = new WebSocket(socketUrl(path));
      socket.onopen = function () { delay = 500; onState && onState("open"); };
      socket.onmessage = function (e) { try { onFrame(JSON.parse(e.data)); } catch (err) { console.error(err); } };
      socket.onclose = function (e) {
        onState && onState("closed", e.code);
        if (e.code >= 4400 && e.code < 4500) { closedByServer = true; return; }  // refused: do not retry
        setTimeout(open, delay);
        delay = Math.min(delay * 2, 10000);
      };
    }
    api.send = function (frame) {
      if (!socket || socket.readyState !== 1) { return false; }
      socket.send(JSON.stringify(frame));
      return true;
    };
    api.refused = function () { return closedByServer; };
    open();
    return api;
  }

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined && text !== null) { node.textContent = text; }
    return node;
  }

  function timeOf(iso) {
    if (!iso) { return ""; }
    var d = new Date(iso);
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  // ---- the conversation pane -------------------------------------------------------------
  function Pane(root) {
    var list = document.getElementById("messages");
    var errorBox = document.getElementById("live-error");
    var mode = root.dataset.mode;
    var self = this;
    this.paused = root.dataset.paused === "true";

    function render(message) {
      var li = el("li", [message.direction, "role-" + message.role, message.status].join(" "));
      li.dataset.id = message.id;
      li.appendChild(el("span", "text", message.text || (message.attachments && message.attachments.length ? "[attachment]" : "")));
      if (message.tool_calls && message.tool_calls.length) {
        var details = el("details", "tools");
        details.appendChild(el("summary", null, message.tool_calls.length + " tool call(s)"));
        message.tool_calls.forEach(function (call) {
          details.appendChild(el("pre", null, call.name + "(" + JSON.stringify(call.args || {}) + ")  " + (call.ok === false ? "✗ " : "✓ ") + (call.result || "") + (call.duration_ms ? " · " + call.duration_ms + " ms" : "")));
        });
        li.appendChild(details);
      }
      var meta = el("span", "meta", (message.role === "human" ? "staff · " : message.role === "agent" ? "agent · " : "") + timeOf(message.created_at) + " ");
      if (message.direction === "out") {
        meta.appendChild(el("span", "tick " + message.status, TICKS[message.status] || message.status));
      }
      li.appendChild(meta);
      if (message.status === "failed") { showFailure(li, message.id, message.error); }
      return li;
    }

    // A failed message shows the provider's error and a Retry button.
    function showFailure(node, id, error) {
      if (error) { node.appendChild(el("span", "error", error)); }
      var retry = el("button", "button retry", "Retry");
      retry.type = "button";
      retry.addEventListener("click", function () { send({ type: "retry", message_id: id }); });
      node.appendChild(retry);
    }

    this.upsert = function (message) {
      var existing = list.querySelector('li[data-id="' + message.id + '"]');
      var node = render(message);
      if (existing) { existing.replaceWith(node); } else { list.appendChild(node); }
      list.scrollTop = list.scrollHeight;
    };

    this.status = function (id, status, error) {
      var existing = list.querySelector('li[data-id="' + id + '"]');
      if (!existing) { return; }
      existing.classList.remove("queued", "sent", "delivered", "read", "failed");
      existing.classList.add(status);
      var tick = existing.querySelector(".tick");
      if (tick) { tick.className = "tick " + status; tick.textContent = TICKS[status] || status; }
      var oldError = existing.querySelector(".error"), oldRetry = existing.querySelector(".retry");
      if (oldError) { oldError.remove(); }
      if (oldRetry) { oldRetry.remove(); }
      if (status === "failed") { showFailure(existing, id, error); }
    };

    this.conversation = function (conversation) {
      var status = document.getElementById("pane-status");
      if (status) { status.textContent = conversation.status; }
      self.paused = !!conversation.bot_paused_until;
      var pausedBadge = document.getElementById("pane-paused");
      if (pausedBadge) { pausedBadge.hidden = !self.paused; }
      var toggle = document.getElementById("bot-toggle");
      if (toggle) { toggle.textContent = self.paused ? "Resume bot" : "Pause bot"; }
      root.dataset.paused = self.paused ? "true" : "false";
      var note = document.getElementById("pane-note");
      if (note && "last_error" in conversation) { note.textContent = conversation.last_error || ""; note.hidden = !conversation.last_error; }
    };

    this.showError = function (text) {
      errorBox.textContent = text;
      errorBox.hidden = !text;
    };

    var socket = liveSocket("/ws/conversations/" + root.dataset.conversation + "/", function (frame) {
      if (frame.type === "event") {
        if (frame.kind === "message.created") { self.upsert(frame.message); }
        else if (frame.kind === "message.status") { self.status(frame.message_id, frame.status, frame.error); }
        else if (frame.kind === "conversation.updated") { self.conversation(frame.conversation); }
        else if (frame.kind === "turn.typing") { document.getElementById("typing").hidden = !frame.on; }
      } else if (frame.type === "error") {
        self.showError(frame.detail);
      } else if (frame.type === "ack") {
        self.showError("");
        if (frame["for"] === "reply" || frame["for"] === "say") { document.getElementById("reply-text").value = ""; }
        if (frame["for"] === "bot") { self.conversation({ status: document.getElementById("pane-status").textContent, bot_paused_until: frame.paused ? frame.bot_paused_until : null }); }
      }
    }, function (state, code) {
      root.dataset.socket = state;
      if (code === 4404) { self.showError("This conversation does not exist or belongs to another shop."); }
    });

    function send(frame) {
      if (!socket.send(frame)) { self.showError("Not connected yet; try again in a moment."); }
    }

    var form = document.getElementById("reply-form");
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      var text = document.getElementById("reply-text").value.trim();
      if (!text) { return; }
      if (mode === "playground") {
        send({ type: "say", text: text, buffer_seconds: parseFloat(document.getElementById("buffer-seconds").value) });
      } else {
        send({ type: "reply", text: text });
      }
    });
    document.getElementById("reply-text").addEventListener("keydown", function (e) {
      if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); form.requestSubmit(); }
    });
    var toggle = document.getElementById("bot-toggle");
    if (toggle) {
      toggle.addEventListener("click", function () { send({ type: "bot", paused: !self.paused }); });
    }

    JSON.parse(document.getElementById("live-messages").textContent).forEach(self.upsert);
  }

  // ---- the inbox ---------------------------------------------------------------------------
  function Inbox(listNode, currentId) {
    function item(id) {
      var node = listNode.querySelector('li[data-id="' + id + '"]');
      if (node) { return node; }
      var empty = document.getElementById("inbox-empty");
      if (empty) { empty.remove(); }
      node = el("li", "inbox-item");
      node.dataset.id = id;
      var a = el("a");
      a.href = "/admin/live/" + id + "/";
      ["name", "badge channel", "badge status", "unread", "preview"].forEach(function (cls) { a.appendChild(el("span", cls)); });
      a.querySelector(".unread").hidden = true;
      node.appendChild(a);
      return node;
    }
    function toTop(node) {
      listNode.insertBefore(node, listNode.firstChild);
      node.classList.remove("fresh"); void node.offsetWidth; node.classList.add("fresh");
    }
    liveSocket("/ws/inbox/", function (frame) {
      if (frame.type !== "event") { return; }
      if (frame.kind === "conversation.updated") {
        var c = frame.conversation, node = item(c.id);
        node.querySelector(".name").textContent = c.contact_name || c.contact_external_id;
        var channel = node.querySelector(".channel");
        channel.textContent = c.channel_source; channel.className = "badge channel channel-" + c.channel_source;
        node.querySelector(".status").textContent = c.status + (c.bot_paused_until ? " · paused" : "");
        if (!node.parentNode) { toTop(node); }
      } else if (frame.kind === "message.created") {
        var m = frame.message, row = item(m.conversation);
        row.querySelector(".preview").textContent = (m.direction === "out" ? "↩ " : "") + (m.text || "");
        var unread = row.querySelector(".unread");
        var count = m.direction === "in" && String(m.conversation) !== String(currentId) ? (parseInt(unread.textContent || "0", 10) + 1) : 0;
        unread.textContent = count; unread.hidden = !count;
        toTop(row);
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var pane = document.getElementById("live-pane");
    var inbox = document.getElementById("inbox-list");
    if (inbox) { new Inbox(inbox, pane ? pane.dataset.conversation : null); }
    if (pane) { window.livePane = new Pane(pane); }
  });
})();
