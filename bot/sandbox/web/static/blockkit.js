/* Block Kit and mrkdwn to DOM, as Slack draws a message, a modal's blocks and their controls.
 *
 * Every text from a payload reaches the page through text nodes (textContent), never as markup,
 * so a hostile "<img src=x onerror=...>" in a reason shows as those very characters. Links are
 * made only for http(s) and mailto URLs. A block or element this renderer does not know is shown
 * as its raw JSON (class "bk-raw"), which the tests look for.
 *
 * window.BlockKit = { renderMessage, renderBlocks, renderBlock, mrkdwn, plainText, inputValues,
 *                     BLOCK_TYPES, ELEMENT_TYPES }
 * ctx: { names: {userId: name}, channels: {channelId: name},
 *        onButton(element, blockId), onThread(message), interactive: bool }
 */
(function () {
  "use strict";

  // The shortcodes Slack users and Runback's texts are likely to use; others stay as typed.
  const EMOJI = {
    white_check_mark: "✅", heavy_check_mark: "✔️", ballot_box_with_check: "☑️", x: "❌",
    warning: "⚠️", rotating_light: "🚨", rewind: "⏪", fast_forward: "⏩", rocket: "🚀",
    hourglass: "⌛", hourglass_flowing_sand: "⏳", pushpin: "📌", memo: "📝", paperclip: "📎",
    mailbox_with_no_mail: "📭", test_tube: "🧪", ring_buoy: "🛟", floppy_disk: "💾",
    no_entry: "⛔", no_entry_sign: "🚫", stop_sign: "🛑", traffic_light: "🚦", pause_button: "⏸️",
    arrow_right: "➡️", arrows_counterclockwise: "🔄", repeat: "🔁", lock: "🔒", key: "🔑",
    bell: "🔔", fire: "🔥", tada: "🎉", thumbsup: "👍", "+1": "👍", thumbsdown: "👎", eyes: "👀",
    information_source: "ℹ️", question: "❓", bulb: "💡", chart_with_upwards_trend: "📈",
    chart_with_downwards_trend: "📉", bar_chart: "📊", clipboard: "📋", calendar: "📆",
    clock1: "🕐", stopwatch: "⏱️", wrench: "🔧", hammer_and_wrench: "🛠️", gear: "⚙️",
    construction: "🚧", triangular_flag_on_post: "🚩", large_green_circle: "🟢",
    large_yellow_circle: "🟡", red_circle: "🔴", white_circle: "⚪", ok: "🆗", sos: "🆘",
    mag: "🔍", shield: "🛡️", busts_in_silhouette: "👥", bust_in_silhouette: "👤", wave: "👋",
    rocket_ship: "🚀", package: "📦", file_folder: "📁", page_facing_up: "📄", link: "🔗",
    heavy_plus_sign: "➕", heavy_minus_sign: "➖", small_blue_diamond: "🔹", zap: "⚡",
    sparkles: "✨", skull: "💀", smile: "😄", slightly_smiling_face: "🙂", thinking_face: "🤔",
  };
  const SAFE_URL = /^(https?:\/\/|mailto:)/i;
  const ENTITIES = { lt: "<", gt: ">", amp: "&" };
  // <entity> | `code` | *bold* | _italic_ | ~strike~ (Slack's word-boundary rules)
  const INLINE = new RegExp(
    [
      "<([^<>\\n]+)>",
      "`([^`\\n]+)`",
      "(?<![\\w*])\\*(?=[^*\\s])([^*\\n]*?[^*\\s])\\*(?![\\w*])",
      "(?<![\\w_])_(?=[^_\\s])([^_\\n]*?[^_\\s])_(?![\\w_])",
      "(?<![\\w~])~(?=[^~\\s])([^~\\n]*?[^~\\s])~(?![\\w~])",
    ].join("|"),
    "g"
  );
  const QUOTE = /^(?:>|&gt;) ?/;

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function decode(text) {
    return String(text).replace(/&(lt|gt|amp);/g, (_, name) => ENTITIES[name]);
  }

  function emojify(text) {
    return text.replace(/:([a-z0-9_+-]+):/g, (shortcode, name) => EMOJI[name] || shortcode);
  }

  function textNode(text) {
    return document.createTextNode(emojify(decode(text)));
  }

  // -- mrkdwn ----------------------------------------------------------------------------------

  function mrkdwn(text, ctx) {
    const box = el("div", "mrkdwn");
    const parts = String(text || "").split("```");
    if (parts.length % 2 === 0) parts[parts.length - 2] += "```" + parts.pop(); // unclosed fence
    parts.forEach((part, index) => {
      if (index % 2 === 1) {
        box.appendChild(el("pre", "bk-pre", decode(part.replace(/^\n/, ""))));
      } else {
        lines(box, index > 0 ? part.replace(/^\n/, "") : part, ctx);
      }
    });
    return box;
  }

  function lines(box, text, ctx) {
    if (!text) return;
    const rows = text.split("\n");
    let target = null;
    let quoting = null;
    rows.forEach((row) => {
      const isQuote = QUOTE.test(row);
      if (target === null || isQuote !== quoting) {
        target = el(isQuote ? "blockquote" : "div", isQuote ? "bk-quote" : "bk-line");
        box.appendChild(target);
        quoting = isQuote;
      } else {
        target.appendChild(document.createElement("br"));
      }
      inline(target, isQuote ? row.replace(QUOTE, "") : row, ctx);
    });
  }

  function inline(parent, text, ctx) {
    let last = 0;
    for (const match of text.matchAll(INLINE)) {
      if (match.index > last) parent.appendChild(textNode(text.slice(last, match.index)));
      last = match.index + match[0].length;
      const [, entityBody, code, bold, italic, strike] = match;
      if (entityBody !== undefined) {
        parent.appendChild(entity(entityBody, ctx));
      } else if (code !== undefined) {
        parent.appendChild(el("code", "bk-code", decode(code)));
      } else {
        const tag = bold !== undefined ? "b" : italic !== undefined ? "i" : "s";
        const node = el(tag);
        inline(node, bold ?? italic ?? strike, ctx);
        parent.appendChild(node);
      }
    }
    if (last < text.length) parent.appendChild(textNode(text.slice(last)));
  }

  function entity(body, ctx) {
    const bar = body.indexOf("|");
    const target = bar < 0 ? body : body.slice(0, bar);
    const label = bar < 0 ? "" : body.slice(bar + 1);
    const names = (ctx && ctx.names) || {};
    const channels = (ctx && ctx.channels) || {};
    if (target.startsWith("@")) {
      const id = target.slice(1);
      return el("span", "bk-mention", "@" + (names[id] || decode(label) || id));
    }
    if (target.startsWith("#")) {
      const id = target.slice(1);
      return el("span", "bk-mention", "#" + (channels[id] || decode(label) || id));
    }
    if (target.startsWith("!")) {
      const command = target.slice(1);
      if (command.startsWith("date^")) return el("span", "bk-date", decode(label || command));
      if (command.startsWith("subteam^")) {
        return el("span", "bk-mention", "@" + decode(label || command.slice(8)).replace(/^@/, ""));
      }
      return el("span", "bk-mention", "@" + decode(label || command));
    }
    const url = decode(target);
    if (!SAFE_URL.test(url)) return textNode("<" + body + ">");
    const link = el("a", "bk-link", decode(label || target));
    link.href = url;
    link.target = "_blank";
    link.rel = "noopener noreferrer";
    return link;
  }

  function plainText(object) {
    const span = el("span", "bk-plain");
    const text = decode((object && object.text) || "");
    span.textContent = object && object.emoji === false ? text : emojify(text);
    return span;
  }

  function textObject(object, ctx) {
    if (!object) return el("span");
    return object.type === "mrkdwn" ? mrkdwn(object.text, ctx) : plainText(object);
  }

  function raw(object) {
    const node = el("pre", "bk-raw", JSON.stringify(object, null, 2));
    node.dataset.fallback = String((object && object.type) || "unknown");
    return node;
  }

  function safeImage(url, alt, className) {
    const img = el("img", className);
    img.alt = String(alt || "");
    const source = String(url || "");
    if (SAFE_URL.test(source) || source.startsWith("/files/")) img.src = source;
    return img;
  }

  // -- elements (accessories, actions, context, inputs) ------------------------------------------

  const ELEMENTS = {
    button(element, blockId, ctx) {
      const style = element.style === "primary" || element.style === "danger" ? element.style : "";
      const button = el("button", "bk-button" + (style ? " bk-" + style : ""));
      button.type = "button";
      button.appendChild(plainText(element.text));
      button.dataset.actionId = String(element.action_id || "");
      if (element.url && SAFE_URL.test(element.url)) {
        button.addEventListener("click", () => window.open(element.url, "_blank", "noopener"));
      } else if (ctx && ctx.onButton && ctx.interactive !== false) {
        button.addEventListener("click", () => ctx.onButton(element, blockId, button));
      } else {
        button.disabled = true;
      }
      return button;
    },
    image(element) {
      return safeImage(element.image_url, element.alt_text, "bk-element-image");
    },
    mrkdwn(element, blockId, ctx) {
      return mrkdwn(element.text, ctx);
    },
    plain_text(element) {
      return plainText(element);
    },
    static_select(element) {
      return select(element);
    },
    overflow(element) {
      const node = select({ ...element, placeholder: { type: "plain_text", text: "⋯" } });
      node.classList.add("bk-overflow");
      return node;
    },
    plain_text_input(element) {
      const multiline = Boolean(element.multiline);
      const input = el(multiline ? "textarea" : "input", "bk-text-input");
      if (!multiline) input.type = "text";
      if (multiline) input.rows = 6;
      input.value = String(element.initial_value || "");
      if (element.placeholder) input.placeholder = decode(element.placeholder.text || "");
      if (element.max_length) input.maxLength = Number(element.max_length);
      input.dataset.actionId = String(element.action_id || "");
      return input;
    },
  };

  function select(element) {
    const node = el("select", "bk-select");
    node.dataset.actionId = String(element.action_id || "");
    const initial = element.initial_option && element.initial_option.value;
    if (!initial && element.placeholder) {
      const placeholder = el("option", "", decode(element.placeholder.text || ""));
      placeholder.value = "";
      node.appendChild(placeholder);
    }
    (element.options || []).forEach((option) => {
      const item = el("option", "", emojify(decode((option.text && option.text.text) || "")));
      item.value = String(option.value || "");
      item.selected = option.value === initial;
      node.appendChild(item);
    });
    return node;
  }

  function renderElement(element, blockId, ctx) {
    const render = ELEMENTS[element && element.type];
    return render ? render(element, blockId, ctx) : raw(element);
  }

  // -- blocks -----------------------------------------------------------------------------------

  const BLOCKS = {
    header(block) {
      const node = el("div", "bk-header");
      node.appendChild(plainText(block.text));
      return node;
    },
    section(block, ctx) {
      const node = el("div", "bk-section");
      const body = el("div", "bk-section-body");
      if (block.text) body.appendChild(textObject(block.text, ctx));
      if (block.fields && block.fields.length) {
        const fields = el("div", "bk-fields");
        block.fields.forEach((field) => fields.appendChild(textObject(field, ctx)));
        body.appendChild(fields);
      }
      node.appendChild(body);
      if (block.accessory) {
        const accessory = el("div", "bk-accessory");
        accessory.appendChild(renderElement(block.accessory, block.block_id, ctx));
        node.appendChild(accessory);
      }
      return node;
    },
    context(block, ctx) {
      const node = el("div", "bk-context");
      (block.elements || []).forEach((element) => {
        const item = renderElement(element, block.block_id, ctx);
        item.classList.add("bk-context-item");
        node.appendChild(item);
      });
      return node;
    },
    divider() {
      return el("hr", "bk-divider");
    },
    image(block) {
      const node = el("figure", "bk-image");
      if (block.title) node.appendChild(el("figcaption", "", decode(block.title.text || "")));
      node.appendChild(safeImage(block.image_url, block.alt_text, "bk-image-img"));
      return node;
    },
    actions(block, ctx) {
      const node = el("div", "bk-actions");
      (block.elements || []).forEach((element) => {
        node.appendChild(renderElement(element, block.block_id, ctx));
      });
      return node;
    },
    input(block, ctx) {
      const node = el("div", "bk-input");
      node.dataset.blockId = String(block.block_id || "");
      const label = el("label", "bk-input-label");
      label.appendChild(plainText(block.label));
      if (block.optional) label.appendChild(el("span", "bk-optional", " (optional)"));
      node.appendChild(label);
      node.appendChild(renderElement(block.element, block.block_id, ctx));
      if (block.hint) node.appendChild(el("div", "bk-hint", decode(block.hint.text || "")));
      const error = el("div", "bk-input-error");
      error.hidden = true;
      node.appendChild(error);
      return node;
    },
    rich_text(block, ctx) {
      const node = el("div", "bk-rich");
      (block.elements || []).forEach((part) => node.appendChild(richPart(part, ctx)));
      return node;
    },
  };

  function richPart(part, ctx) {
    const kind = part.type;
    if (kind === "rich_text_section") return richSection(el("div", "bk-line"), part, ctx);
    if (kind === "rich_text_preformatted") return richSection(el("pre", "bk-pre"), part, ctx);
    if (kind === "rich_text_quote") return richSection(el("blockquote", "bk-quote"), part, ctx);
    if (kind === "rich_text_list") {
      const list = el(part.style === "ordered" ? "ol" : "ul", "bk-list");
      (part.elements || []).forEach((item) => {
        list.appendChild(richSection(el("li"), item, ctx));
      });
      return list;
    }
    return raw(part);
  }

  function richSection(node, part, ctx) {
    (part.elements || []).forEach((item) => {
      let child;
      if (item.type === "text") child = el("span", "", emojify(String(item.text || "")));
      else if (item.type === "link" && SAFE_URL.test(String(item.url || ""))) {
        child = el("a", "bk-link", String(item.text || item.url));
        child.href = item.url;
        child.target = "_blank";
        child.rel = "noopener noreferrer";
      } else if (item.type === "user") child = entity("@" + item.user_id, ctx);
      else if (item.type === "channel") child = entity("#" + item.channel_id, ctx);
      else if (item.type === "emoji") child = el("span", "", EMOJI[item.name] || `:${item.name}:`);
      else return node.appendChild(raw(item));
      const style = item.style || {};
      if (style.code) child.classList.add("bk-code");
      if (style.bold) child.style.fontWeight = "bold";
      if (style.italic) child.style.fontStyle = "italic";
      if (style.strike) child.style.textDecoration = "line-through";
      node.appendChild(child);
    });
    return node;
  }

  function renderBlock(block, ctx) {
    const render = BLOCKS[block && block.type];
    const node = render ? render(block, ctx) : raw(block);
    node.classList.add("bk-block");
    node.dataset.blockType = String((block && block.type) || "unknown");
    return node;
  }

  function renderBlocks(blocks, ctx) {
    const box = el("div", "bk-blocks");
    (blocks || []).forEach((block) => box.appendChild(renderBlock(block, ctx)));
    return box;
  }

  // -- messages ---------------------------------------------------------------------------------

  function renderFiles(files) {
    const box = el("div", "msg-files");
    (files || []).forEach((file) => {
      const card = el("div", "msg-file");
      card.dataset.fileId = String(file.id || "");
      if (file.image) {
        const link = el("a", "msg-file-image");
        link.href = file.url;
        link.target = "_blank";
        link.rel = "noopener";
        link.appendChild(safeImage(file.url, file.title, "msg-file-img"));
        card.appendChild(link);
      } else {
        card.appendChild(el("span", "msg-file-icon", "📄"));
      }
      const meta = el("div", "msg-file-meta");
      meta.appendChild(el("div", "msg-file-title", file.title || file.name));
      meta.appendChild(el("div", "msg-file-name", file.name));
      const download = el("a", "msg-file-download", "Download");
      download.href = file.url + "?download";
      download.setAttribute("download", String(file.name || "file"));
      meta.appendChild(download);
      card.appendChild(meta);
      box.appendChild(card);
    });
    return box;
  }

  function renderAttachments(attachments, ctx) {
    const box = el("div", "msg-attachments");
    (attachments || []).forEach((attachment) => {
      const item = el("div", "msg-attachment");
      const color = String(attachment.color || "");
      if (/^#?[0-9a-f]{3,8}$/i.test(color)) {
        item.style.borderLeftColor = color.startsWith("#") ? color : "#" + color;
      }
      if (attachment.blocks) item.appendChild(renderBlocks(attachment.blocks, ctx));
      else if (attachment.text || attachment.fallback) {
        item.appendChild(mrkdwn(attachment.text || attachment.fallback, ctx));
      }
      box.appendChild(item);
    });
    return box;
  }

  function renderMessage(message, ctx) {
    const node = el("div", "msg" + (message.ephemeral ? " msg-ephemeral" : ""));
    node.dataset.key = message.key || "";
    node.dataset.ts = message.ts || "";
    node.appendChild(el("div", "msg-avatar", (message.author || "?").slice(0, 1).toUpperCase()));
    const body = el("div", "msg-body");
    if (message.ephemeral) {
      body.appendChild(el("div", "msg-only-you", "👁 Only visible to you"));
    }
    const head = el("div", "msg-head");
    head.appendChild(el("span", "msg-author", message.author || "unknown"));
    if (message.bot) head.appendChild(el("span", "msg-app", "APP"));
    if (message.version > 1) head.appendChild(el("span", "msg-edited", "(edited)"));
    body.appendChild(head);
    if (message.blocks && message.blocks.length) {
      body.appendChild(renderBlocks(message.blocks, ctx));
    } else if (message.text) {
      body.appendChild(mrkdwn(message.text, ctx));
    }
    if (message.attachments && message.attachments.length) {
      body.appendChild(renderAttachments(message.attachments, ctx));
    }
    if (message.files && message.files.length) body.appendChild(renderFiles(message.files));
    if (message.replies && ctx && ctx.onThread) {
      const count = message.replies;
      const link = el("button", "msg-replies", count + (count === 1 ? " reply" : " replies"));
      link.type = "button";
      link.addEventListener("click", () => ctx.onThread(message));
      body.appendChild(link);
    }
    node.appendChild(body);
    return node;
  }

  // What the user typed into a form's inputs, by action_id (as the page sends it).
  function inputValues(container) {
    const values = {};
    container.querySelectorAll("[data-action-id]").forEach((field) => {
      if (field.matches("input, textarea, select")) values[field.dataset.actionId] = field.value;
    });
    return values;
  }

  window.BlockKit = {
    renderMessage,
    renderBlocks,
    renderBlock,
    mrkdwn,
    plainText,
    inputValues,
    BLOCK_TYPES: Object.keys(BLOCKS),
    ELEMENT_TYPES: Object.keys(ELEMENTS),
  };
})();
