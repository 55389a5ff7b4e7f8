"""The Telegram bot: a thin python-telegram-bot adapter over feedbot.chat.

Every handler hands the update to the conversation logic in a worker thread (database work stays
off the event loop), then sends what it returned. Run it with `feedbot worker`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from telegram import (
    BotCommand,
    LinkPreviewOptions,
    Message,
    Update,
)
from telegram.constants import ParseMode
from telegram.error import BadRequest, RetryAfter, TelegramError, TimedOut
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    BaseRateLimiter,
    CallbackQueryHandler,
    ChatMemberHandler,
    ContextTypes,
    Defaults,
    MessageHandler,
    filters,
)
from telegram.request import HTTPXRequest

from feedbot.chat import commands, groups, imports, telegram_groups
from feedbot.chat.conversation import BUTTON_DATA, Chat, User, storable
from feedbot.config import Settings
from feedbot.delivery import deliveries, telegram_send
from feedbot.delivery.messages import Answer, Button, Reply, escape
from feedbot.delivery.telegram_send import Blocked, keyboard_markup, send_replies
from feedbot.library.parse import too_big
from feedbot.store.db import transaction
from feedbot.store.subscribers import get as get_subscriber

log = logging.getLogger(__name__)
IMPORT_WORKERS = 4  # imports at once in one bot process; more wait their turn


def keyboard_of(message: Message | None) -> list[list[Button]]:
    """The buttons of a message we sent, back as plain data (empty for an inaccessible message)."""
    markup = getattr(message, "reply_markup", None)
    if markup is None:
        return []
    return [[Button(b.text, b.callback_data) for b in row if isinstance(b.callback_data, str)]
            for row in markup.inline_keyboard]


def is_not_modified(error: TelegramError) -> bool:
    return "message is not modified" in str(error).lower()


class TelegramBot:
    """Handlers for one Application; holds the Chat they all call."""

    def __init__(self, chat: Chat) -> None:
        self.chat = chat
        # Imports run here, off the update slots and the threads the chat's answers use: an import
        # takes minutes, and a few at once must not stop everyone else's commands.
        self.imports = ThreadPoolExecutor(IMPORT_WORKERS, thread_name_prefix="import")
        self.admins = telegram_groups.Admins()
        self.redraws = telegram_groups.Redraws()

    @staticmethod
    def user_of(update: Update) -> User:
        return telegram_groups.asker(update)

    async def asking(self, update: Update, needs_admin: bool) -> User:
        """Who asks; in a group, whether they administer it, asked of Telegram only when it matters."""
        user = self.user_of(update)
        if needs_admin and user.kind != "private" and not user.admin and user.member_id:
            user = replace(user, admin=await self.admins.check(update.get_bot(), user.chat_id, user.member_id))
        return user

    async def on_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A /command: its name and arguments go to the conversation, unless it is addressed to
        another bot (`/stop@OtherBot` in a group)."""
        typed = commands.parse(update.effective_message.text or "")
        if not typed.for_bot(context.bot.username):
            return
        command = commands.find(storable(typed.name).casefold())
        needs_admin = command is not None and groups.admin_only(command, storable(typed.args).strip())
        user = await self.asking(update, needs_admin)
        if typed.name.casefold() == "import" and imports.is_job(typed.args):
            if imports.holds_secret(typed.args):  # a Zotero key: gone from the chat before it is used
                await self.delete(update.effective_message)
            self.start_import(context, update, self.chat.command, user, typed.name, typed.args,
                              self.progress(update))
            return
        replies = await asyncio.to_thread(self.chat.command, user, typed.name, typed.args)
        await self.reply(update, replies)

    def start_import(self, context: ContextTypes.DEFAULT_TYPE, update: Update, job, *args) -> None:
        """Run an import in the imports' threads and answer when it is done; the update is handled
        at once, so the bot goes on with other updates meanwhile."""
        async def run() -> None:
            replies = await asyncio.get_running_loop().run_in_executor(self.imports, job, *args)
            await self.reply(update, replies)

        context.application.create_task(run(), update=update)  # a failure reaches on_error

    async def on_document(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A file: a library to import (BibTeX, RIS, CSL-JSON), refused unread when too big. Files
        shared in a group are the members' own business."""
        if self.user_of(update).kind != "private":
            return
        document = update.effective_message.document
        name = document.file_name or "your file"
        problem = too_big(document.file_size or 0)
        if not problem:
            try:
                content = bytes(await (await document.get_file()).download_as_bytearray())
            except TelegramError as exc:
                problem = f"Telegram would not hand me the file ({exc})"
        if problem:
            await self.reply(update, [Reply(escape(f"Import of {name} failed: {problem}. Nothing was stored."))])
            return
        self.start_import(context, update, imports.document, self.chat, self.user_of(update), name, content,
                          self.progress(update))

    def progress(self, update: Update) -> imports.Show:
        """Progress from the import's thread: one message, sent once, then edited in place."""
        loop, bot, chat_id = asyncio.get_running_loop(), update.get_bot(), self.user_of(update).chat_id
        sent: list[int] = []

        async def show(text: str) -> None:
            try:
                if sent:
                    await bot.edit_message_text(text, chat_id, sent[0])
                else:
                    sent.append((await bot.send_message(chat_id, text)).message_id)
            except TelegramError as exc:  # progress is a courtesy: the import goes on
                if not is_not_modified(exc):
                    log.info("could not show import progress to chat %s: %s", chat_id, exc)

        return lambda text: asyncio.run_coroutine_threadsafe(show(text), loop).result(60)

    @staticmethod
    async def delete(message: Message) -> None:
        try:
            await message.delete()
        except TelegramError as exc:
            log.warning("could not delete a message holding a Zotero key (chat %s): %s", message.chat_id, exc)

    async def on_text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Plain text: the answer to an onboarding question, or a pointer to /help."""
        replies = await asyncio.to_thread(self.chat.text, self.user_of(update), update.effective_message.text or "")
        await self.reply(update, replies)

    async def on_other(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Stickers, photos, files: say what feedbot understands (in a private chat only)."""
        if self.user_of(update).kind != "private":
            return
        await self.reply(update, [Reply("I only understand text and commands: send /help.")])

    async def on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A 👍/👎 or settings button. The vote is committed before the query is answered."""
        query = update.callback_query
        kind = (query.data or "").partition(":")[0]
        user = await self.asking(update, groups.admin_only_button(kind))
        answer: Answer = await asyncio.to_thread(self.chat.button, user, query.data or "", keyboard_of(query.message))
        # CallbackQueries need to be answered, even with no notice, or the client shows a spinner.
        await query.answer(answer.notice or None, show_alert=answer.alert)
        if user.kind != "private" and kind == "v" and answer.keyboard is not None and query.message is not None:
            await self.redraws.run((query.message.chat.id, query.message.message_id),
                                   lambda: self.redraw_counts(user, query))
            return
        try:
            if answer.text is not None:
                await query.edit_message_text(answer.text, reply_markup=keyboard_markup(answer.keyboard))
            elif answer.keyboard is not None:
                await query.edit_message_reply_markup(keyboard_markup(answer.keyboard))
        except BadRequest as exc:
            # A double tap re-sends the same keyboard; an old message may no longer be editable.
            if not is_not_modified(exc):
                log.info("could not edit message after button press: %s", exc)
        if answer.replies:
            await self.reply(update, answer.replies)

    async def redraw_counts(self, user: User, query) -> None:
        """A group digest's buttons with the members' counts as stored now."""
        keyboard = await asyncio.to_thread(groups.redraw, self.chat, user, keyboard_of(query.message))
        if keyboard is None:
            return
        try:
            await query.edit_message_reply_markup(keyboard_markup(keyboard))
        except TelegramError as exc:  # the counts are stored: the next tap draws them again
            if not is_not_modified(exc):
                log.info("could not redraw the counts in chat %s: %s", user.chat_id, exc)

    async def on_my_chat_member(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """The bot added to a group (a greeting saying how to start), or removed from a group or
        channel (its subscription stops), or blocked in a private chat (no more digests)."""
        change = update.my_chat_member
        kind = telegram_groups.chat_kind(change.chat.type)
        now, before = change.new_chat_member.status, change.old_chat_member.status
        if now in telegram_groups.GONE:
            if kind == "private":
                await asyncio.to_thread(mark_blocked, self.chat, change.chat.id)
            else:
                await asyncio.to_thread(telegram_groups.chat_left, self.chat.engine, change.chat.id)
        elif kind == "group" and before in telegram_groups.GONE:
            name = escape(context.bot.username)
            await self.reply(update, [Reply(
                "Hello! I post the few new research papers a group most likely wants, and learn from "
                f"its members' 👍/👎. An administrator starts me with /start@{name}.")])

    async def on_migrate(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """The group became a supergroup: the same subscription under the new chat id."""
        moved = telegram_groups.migration_of(update)
        if moved is not None:
            await asyncio.to_thread(telegram_groups.chat_migrated, self.chat.engine, *moved)

    async def on_forged_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Callback data we never sent: answer it, change nothing."""
        await update.callback_query.answer("That button is not valid (anymore).", show_alert=True)

    async def reply(self, update: Update, replies: Sequence[Reply]) -> None:
        user = self.user_of(update)
        if replies and replies[0].delivery is not None:  # a claimed digest: the delivery module sends it
            item = deliveries.Outgoing.direct(replies[0].delivery, user.chat_id, list(replies))
            await deliveries.send_now(self.chat.engine, item, telegram_send.telegram_transport(update.get_bot()),
                                      self.chat.clock)
            return
        try:
            await send_replies(update.get_bot(), user.chat_id, replies)
        except Blocked:
            await asyncio.to_thread(mark_blocked, self.chat, user.telegram_id)
        except TimedOut:
            # The message may well have arrived: never send a second copy blindly.
            log.warning("timed out replying to chat %s; not retrying", user.chat_id)

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Log the failing update and carry on: one bad update must not stop the bot."""
        if isinstance(context.error, RetryAfter | TimedOut):
            log.warning("Telegram error %s while handling %s", context.error, _describe(update))
            return
        log.error("error while handling %s", _describe(update), exc_info=context.error)


def _describe(update: object) -> str:
    if isinstance(update, Update):
        kind = "callback" if update.callback_query else "message"
        user = update.effective_user.id if update.effective_user else "?"
        return f"update {update.update_id} ({kind} from user {user})"
    return repr(update)[:200]


def mark_blocked(chat: Chat, telegram_id: int) -> None:
    """Telegram said 403: no more digests until the user sends /start again."""
    with transaction(chat.engine) as session:
        subscriber = get_subscriber(session, telegram_id)
        if subscriber is not None:
            subscriber.state = "blocked"
    log.info("subscriber telegram_id=%s blocked the bot: marked inactive", telegram_id)


async def set_menu(bot) -> None:
    """Commands registered at start show up in Telegram's menu."""
    await bot.set_my_commands([BotCommand(name, text) for name, text in commands.menu()])


def build_application(settings: Settings, chat: Chat, timeout: float = 15.0, max_retries: int = 5,
                      rate_limit: bool = True, connections: int = 16,
                      rate_limiter: BaseRateLimiter | None = None) -> Application:
    """The Application with every handler, rate limiting with retries, and HTML by default."""
    if not settings.telegram_token:
        raise ValueError("TELEGRAM_BOT_TOKEN is not set")
    builder = (
        ApplicationBuilder()
        .token(settings.telegram_token)
        # Digests and lists carry a link per paper: one preview per message would be noise.
        .defaults(Defaults(parse_mode=ParseMode.HTML, link_preview_options=LinkPreviewOptions(is_disabled=True)))
        .request(telegram_send.SendMessageRequest(connections, timeout, timeout, timeout, timeout))
        .get_updates_request(HTTPXRequest(connection_pool_size=1, read_timeout=timeout + 60))
        .concurrent_updates(8)
        .job_queue(None)  # the worker schedules with its own APScheduler
    )
    if rate_limit:
        builder = builder.rate_limiter(rate_limiter or AIORateLimiter(max_retries=max_retries))
    if settings.telegram_api_url:
        base = settings.telegram_api_url
        builder = builder.base_url(base).base_file_url(base.removesuffix("/bot") + "/file/bot")
    application = builder.build()
    handlers = TelegramBot(chat)
    application.bot_data["feedbot"] = handlers
    # New messages only: an edited message would run its command, or answer a question, again.
    new = filters.UpdateType.MESSAGE
    application.add_handler(MessageHandler(filters.StatusUpdate.MIGRATE, handlers.on_migrate))
    application.add_handler(ChatMemberHandler(handlers.on_my_chat_member, ChatMemberHandler.MY_CHAT_MEMBER))
    application.add_handler(MessageHandler(new & filters.COMMAND, handlers.on_command))
    # A channel's posts are its administrators': its commands are answered in the channel.
    application.add_handler(MessageHandler(filters.UpdateType.CHANNEL_POST & filters.COMMAND, handlers.on_command))
    application.add_handler(MessageHandler(new & filters.TEXT & ~filters.COMMAND, handlers.on_text))
    application.add_handler(CallbackQueryHandler(handlers.on_button, pattern=BUTTON_DATA))
    application.add_handler(CallbackQueryHandler(handlers.on_forged_button))
    application.add_handler(MessageHandler(new & filters.Document.ALL, handlers.on_document))
    application.add_handler(MessageHandler(new, handlers.on_other))
    application.add_error_handler(handlers.on_error)
    return application
