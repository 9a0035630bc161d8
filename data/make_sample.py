"""Generate the synthetic Weibo-comment sample datasets used by the demo and the tests.

Every comment is assembled from hand-written phrase pools below (no network, no language model), in the
style of real Weibo comments on Chinese cultural TV shows. Nothing here is real user data.

Writes, next to this script (or into ``--out-dir``):

* ``labeled_sample.xlsx``   -- columns ``Sentence``, ``Label`` (0 production, 1 heritage, 2 culture, 3 irrelevant)
* ``unlabeled_sample.xlsx`` -- column ``Sentence``

Both files are deterministic: the same seeds always give the same rows in the same order.

    python data/make_sample.py
"""

from __future__ import annotations

import argparse
import random
import re
import string
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

LABELED_SEED = 20240501
UNLABELED_SEED = 20240917

PRODUCTION, HERITAGE, CULTURE, IRRELEVANT = 0, 1, 2, 3
LABEL_NAMES = {PRODUCTION: "production", HERITAGE: "heritage", CULTURE: "culture", IRRELEVANT: "irrelevant"}

# ---------------------------------------------------------------------------------------------------------------
# Fillers
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Show:
    name: str
    tag: str
    kind: str
    hosts: tuple[str, ...]
    people: tuple[str, ...]


SHOWS = (
    Show("国家宝藏", "国家宝藏", "节目", ("张国立", "张国立老师"), ("王凯", "梁家辉", "李晨", "国宝守护人们")),
    Show("上新了·故宫", "上新了故宫", "综艺", ("单霁翔院长", "单院长"), ("周一围", "宋威龙", "嘉宾们")),
    Show("如果国宝会说话", "如果国宝会说话", "纪录片", (), ("解说老师", "配音老师")),
    Show("我在故宫六百年", "我在故宫六百年", "纪录片", (), ("古建修缮的师傅们", "木作老师傅", "故宫的工匠们")),
    Show("只此青绿", "只此青绿", "舞蹈诗剧", (), ("孟庆旸", "张翰", "青绿腰的舞者们")),
    Show("典籍里的中国", "典籍里的中国", "节目", ("撒贝宁", "撒老师", "王嘉宁"), ("倪大红", "演伏生的老师")),
    Show("中国诗词大会", "中国诗词大会", "节目", ("董卿", "龙洋"), ("康震老师", "蒙曼老师", "郦波老师", "选手们")),
    Show("唐宫夜宴", "唐宫夜宴", "舞蹈", (), ("唐宫小姐姐们", "郑州歌舞剧院的演员们")),
)

# (relic, museum, dynasty)
RELICS = (
    ("越王勾践剑", "湖北省博物馆", "春秋"),
    ("曾侯乙编钟", "湖北省博物馆", "战国"),
    ("云梦睡虎地秦简", "湖北省博物馆", "秦代"),
    ("千里江山图", "故宫博物院", "北宋"),
    ("清明上河图", "故宫博物院", "北宋"),
    ("各种釉彩大瓶", "故宫博物院", "清代"),
    ("金瓯永固杯", "故宫博物院", "清代"),
    ("石鼓", "故宫博物院", "先秦"),
    ("五牛图", "故宫博物院", "唐代"),
    ("韩熙载夜宴图", "故宫博物院", "五代"),
    ("长信宫灯", "河北博物院", "西汉"),
    ("金缕玉衣", "河北博物院", "西汉"),
    ("贾湖骨笛", "河南博物院", "新石器时代"),
    ("莲鹤方壶", "河南博物院", "春秋"),
    ("妇好鸮尊", "河南博物院", "商代"),
    ("后母戊鼎", "国家博物馆", "商代"),
    ("四羊方尊", "国家博物馆", "商代"),
    ("击鼓说唱俑", "国家博物馆", "东汉"),
    ("红山玉龙", "国家博物馆", "新石器时代"),
    ("错金银云纹铜犀尊", "国家博物馆", "西汉"),
    ("何尊", "宝鸡青铜器博物院", "西周"),
    ("大克鼎", "上海博物馆", "西周"),
    ("马踏飞燕", "甘肃省博物馆", "东汉"),
    ("三星堆青铜面具", "三星堆博物馆", "商代"),
    ("太阳神鸟金饰", "金沙遗址博物馆", "商周"),
    ("素纱襌衣", "湖南博物院", "西汉"),
    ("簪花仕女图", "辽宁省博物馆", "唐代"),
    ("鎏金舞马衔杯纹银壶", "陕西历史博物馆", "唐代"),
)

FIGURES = (
    "苏轼", "李白", "杜甫", "王希孟", "宋徽宗", "乾隆", "司马迁", "屈原", "孔子", "宋应星", "李时珍", "徐霞客",
    "伏生", "王羲之", "李清照", "辛弃疾", "武则天", "唐太宗", "张骞", "郑和", "沈括", "妇好", "越王勾践", "王阳明",
)  # fmt: skip

BOOKS = (
    "尚书", "天工开物", "史记", "论语", "道德经", "本草纲目", "孙子兵法", "楚辞", "诗经", "徐霞客游记", "永乐大典",
    "传习录", "周易", "齐民要术", "梦溪笔谈",
)  # fmt: skip

# (poet, poem)
POEMS = (
    ("苏轼", "水调歌头"), ("苏轼", "念奴娇·赤壁怀古"), ("苏轼", "定风波"), ("李白", "将进酒"),
    ("李白", "蜀道难"), ("杜甫", "春望"), ("杜甫", "登高"), ("李清照", "声声慢"), ("辛弃疾", "破阵子"),
    ("屈原", "离骚"), ("王维", "山居秋暝"),
)  # fmt: skip

OTHER_SHOWS = ("狂飙", "繁花", "甄嬛传", "琅琊榜", "庆余年", "长相思", "漫长的季节", "向往的生活", "奔跑吧", "乘风破浪")
PRODUCTS = ("奶茶券", "面膜", "防晒霜", "蓝牙耳机", "零食大礼包", "考研网课", "扫地机器人", "口红")
USERS = (
    "央视综艺", "国家宝藏", "故宫博物院", "典籍里的中国", "中国诗词大会", "河南卫视", "小鱼干不吃鱼", "今天也要努力鸭",
    "momo_", "一只小熊猫", "Sherry酱", "追光者007", "苏苏爱吃饭", "橘子汽水Orange", "考古小白", "历史课代表",
)  # fmt: skip

EMOJI = ("😭", "👍", "🔥", "❤️", "🙏", "😂", "🥺", "✨", "👏", "💪", "🤣", "😍", "🇨🇳", "🌸", "🎉", "💯", "😅", "🥰")
WEIBO_EMOTICONS = ("[doge]", "[允悲]", "[笑cry]", "[心]", "[赞]", "[泪]", "[二哈]", "[抱抱]", "[good]", "[打call]")
SLANG = ("yyds", "绝绝子", "破防了", "泪目", "狠狠爱了", "awsl", "我哭死", "谁懂啊", "好家伙", "救命", "绝了", "冲冲冲")
ENGLISH = ("amazing", "respect", "OMG", "so beautiful", "love it", "perfect", "wow", "best show ever", "nice")

# ---------------------------------------------------------------------------------------------------------------
# Phrase pools per class. Placeholders: {show} {kind} {host} {person} {relic} {museum} {dynasty} {figure} {book}
# {poem} {other} {product} {user} {n} {season} {score}
# ---------------------------------------------------------------------------------------------------------------

CLAUSES = {
    PRODUCTION: (
        "{host}主持得太好了",
        "{host}的控场能力绝了",
        "{host}一开口我就笑了",
        "{host}的串词写得好有文采",
        "{host}今天这身衣服好好看",
        "弹幕全在夸{host}",
        "主持人和嘉宾的互动好有意思",
        "{person}演得太好了，眼泪止不住",
        "{person}的表现力绝了",
        "{person}那段表演我反复看了好几遍",
        "{person}的造型也太绝了",
        "这一期制作好用心，画面美哭了",
        "《{show}》的画面每一帧都能当壁纸",
        "什么时候出下一季",
        "《{show}》第{season}季什么时候播啊",
        "蹲了好久终于等到《{show}》更新",
        "BGM太好听了，求歌名",
        "片尾曲单曲循环一整天了",
        "舞美yyds，灯光也绝绝子",
        "节目节奏有点拖，前面铺垫太长",
        "感觉这季不如第一季，综艺感太重了",
        "嘉宾讲解有点念稿的感觉",
        "剪辑有点乱，前后跳来跳去",
        "央视这次真下本钱了，特效好评",
        "一集才五分钟，根本不够看",
        "为什么放在周末晚上播，学生党哭了",
        "重播在哪个频道能看",
        "网上哪里能看全集啊",
        "会员才能看？？？",
        "豆瓣{score}分实至名归",
        "导演是懂镜头的",
        "这个{kind}真的是一股清流",
        "第{n}期比上一期还好看",
        "节目组的服化道考究得吓人",
        "节目组的文案是谁写的，太有才了",
        "小剧场有点尬，但整体还行",
        "这个舞蹈编排太绝了",
        "河南卫视这波赢麻了",
        "唐宫小姐姐们胖乎乎的好可爱",
        "青绿腰我练了一晚上都没下去",
        "一期九十分钟看得意犹未尽",
        "字幕有错别字，希望节目组改一下",
        "春晚之后最期待的就是《{show}》",
        "配音老师的声音好温柔",
        "镜头转场太丝滑了",
        "这季嘉宾阵容好强",
        "希望节目组多请点专业的老师",
        "《{show}》能不能出个加长版",
        "看了预告就开始期待了",
        "{kind}拍得比电影还好看",
        "制作团队太用心了，respect",
        "CCTV 这个节目真的 yyds",
        "三刷了还是好看",
        "拍摄手法很新颖，不是那种说教的",
        "感觉有点用力过猛，煽情太多了",
        "节目时长能不能再长一点",
        "《{show}》的配乐是谁做的，太高级了",
        "今晚八点准时守着电视",
        "这期收视率肯定爆了",
        "打分：画面10分，讲解8分",
    ),
    HERITAGE: (
        "原来{relic}是{dynasty}的，长知识了",
        "{relic}是{dynasty}的，保存得这么好太不容易了",
        "想去{museum}看{relic}真品",
        "之前在{museum}见过{relic}，本人比电视上还震撼",
        "{relic}的纹饰好精细，古人怎么做到的",
        "{relic}现在是在{museum}吗",
        "历史书上只是一张小图，原来{relic}这么大",
        "第一次知道{relic}背后有这么多故事",
        "{relic}的造型也太萌了吧",
        "{relic}这个颜色放到现在也很高级",
        "{dynasty}的工艺水平也太高了",
        "{relic}是不是只有特展才能看到",
        "{figure}真是个有趣的灵魂",
        "{figure}好惨啊，看得心疼",
        "{figure}的一生太传奇了",
        "原来{figure}还有这样的一面",
        "{figure}要是活在现在肯定是顶流",
        "{poet}写的《{poem}》我背了好多遍",
        "《{book}》原来是这么流传下来的",
        "以前只知道《{book}》的名字，今天才知道讲的是什么",
        "《{book}》里居然还记载了这些",
        "越王勾践剑两千多年了还这么锋利",
        "《千里江山图》的青绿颜料是矿石磨的",
        "王希孟十八岁就画出了千里江山图",
        "何尊上第一次出现了“中国”两个字",
        "素纱襌衣才49克，比一个鸡蛋还轻",
        "曾侯乙编钟现在还能演奏，太神奇了",
        "三星堆的面具好像外星人👽",
        "宋徽宗的瘦金体真好看，可惜当皇帝不行",
        "马踏飞燕是中国旅游标志，原来是东汉的",
        "石鼓上的文字被称为石刻之祖",
        "李时珍为了写本草纲目走了好多地方",
        "司马迁受了宫刑还坚持写完史记",
        "苏轼被贬了那么多次还研究出了东坡肉",
        "舞马衔杯银壶上的马在跳舞诶",
        "清明上河图里找了半天虹桥",
        "击鼓说唱俑的表情太欢乐了",
        "长信宫灯还能吸烟除尘，古人好聪明",
        "瓷母真的是乾隆审美，花里胡哨但很震撼",
        "伏生九死一生护住了尚书",
        "宋应星写天工开物的时候应该很孤独吧",
        "徐霞客一辈子都在路上",
        "李白和杜甫的友谊好好哭",
        "金瓯永固杯是皇帝元旦用的酒杯",
        "妇好是商朝的女将军，太飒了",
        "贾湖骨笛几千年了还能吹出音",
        "红山玉龙被叫做中华第一龙",
        "后母戊鼎好重，八百多公斤",
        "四羊方尊的羊头是单独铸的",
        "金缕玉衣用了两千多片玉片",
        "簪花仕女图里的妆容好时髦",
        "韩熙载夜宴图里每个人的表情都不一样",
        "五牛图里的牛画得好传神",
        "兰亭序真迹据说陪葬昭陵了",
        "古代的颜料居然能保存千年不褪色",
        "{relic}能不能出个文创",
        "考古学家和修复师太不容易了",
        "{dynasty}的审美真的 next level",
    ),
    CULTURE: (
        "中华文化博大精深，为祖国骄傲",
        "传统文化需要这样的传承",
        "这就是中国人的浪漫",
        "五千年文明从未断绝，这是我们的底气",
        "文化自信不是喊出来的",
        "希望年轻人多了解我们自己的文化",
        "DNA动了，刻在骨子里的东西",
        "我们的祖先太了不起了，作为中国人很自豪",
        "文化传承要靠一代又一代人",
        "中国审美yyds",
        "传统文化才是最酷的潮流",
        "这才是应该让孩子看的东西",
        "诗词里藏着我们民族的精神",
        "山河无恙，文脉永续",
        "一眼千年，破防了",
        "何其有幸，生于华夏",
        "此生无悔入华夏",
        "文物承载着一个民族的记忆",
        "中国人骨子里的浪漫是藏不住的",
        "守护文化遗产是每个人的责任",
        "让文物活起来，让文化走出去",
        "希望外国朋友也能看到真正的中国",
        "传统和现代结合才有生命力",
        "中华民族生生不息，靠的就是这份精神",
        "文化是一个国家的灵魂",
        "《{show}》让我重新认识了传统文化",
        "需要更多弘扬传统文化的作品",
        "泱泱华夏，千古风流",
        "我们的文化从来不缺美，缺的是发现",
        "华夏衣冠，礼仪之邦",
        "这才是大国气象",
        "老祖宗留下的东西不能丢",
        "文明的火种一直在传",
        "汉字真的是世界上最美的文字",
        "诗和远方都在我们的文化里",
        "民族的才是世界的",
        "中国风才是顶级审美",
        "看到{figure}那种家国情怀，破防了",
        "文化强国，未来可期",
        "身为中国人，这一刻真的好骄傲",
        "传统节日也要好好过，这是我们的根",
        "根在这里，魂在这里",
        "国潮不只是衣服，是文化的觉醒",
        "每一个中国人都应该看看",
        "希望传统文化能被更多年轻人喜欢",
        "Chinese culture is amazing",
        "文化的力量是润物细无声的",
        "这种东方美学别的国家学不来",
        "文脉传承，薪火相传",
        "中华文明的包容性真的了不起",
        "我们的文化自信就来源于此",
        "中国人的精神家园就在这里",
        "这份民族自豪感谁懂",
    ),
    IRRELEVANT: (
        "转发微博",
        "早上好",
        "晚安各位",
        "有人一起追《{other}》吗",
        "有没有人知道《{other}》什么时候更新",
        "抽奖抽奖，求锦鲤",
        "求中奖，转发一下",
        "加V看更多精彩内容",
        "兼职日结，有意私信",
        "今天好冷啊",
        "打卡第{n}天",
        "沙发沙发",
        "前排围观",
        "{product}买一送一，点主页链接",
        "晚饭吃什么好纠结",
        "关注我，互粉必回",
        "求互关",
        "楼上说得对",
        "考研人今天又是学不进去的一天",
        "谁懂啊，上班好累",
        "明天考试了保佑我",
        "这个博主怎么不更新了",
        "看到这条微博的人都会好运",
        "我家猫今天又把杯子打了",
        "周末去哪玩",
        "我的快递怎么还没到",
        "《{other}》好好看",
        "今天的热搜好离谱",
        "有没有人一起拼单",
        "这条微博我先占个位",
        "刷到就是缘分，点个赞吧",
        "你们的评论笑死我了",
        "我就看看不说话",
        "又熬夜了，明天起不来",
        "减肥第{n}天，失败",
        "这图是哪里的？求原图",
        "楼主头像好可爱",
        "这个博主是谁，怎么推给我了",
        "@{user} 你要的链接",
        "微博又抽风了，图片加载不出来",
        "#{other}# 超话签到",
        "代购日韩化妆品，正品保证",
        "点我主页，每天分享穿搭",
        "天气预报说明天下雨",
        "家人们谁懂啊，今天地铁挤死了",
        "第一次评论，紧张",
        "好久没上微博了",
        "这个点还有人醒着吗",
        "刚下班，饿死了",
        "帮忙投个票，谢谢家人们",
        "#今日份打卡#",
        "#微博抽奖平台# #{other}#",
        "Good morning everyone",
        "有人组队打游戏吗",
    ),
}

# Longer single sentences (roughly 30-70 characters) used for the 40-120 character comments.
MEDIUM = {
    PRODUCTION: (
        "说实话一开始以为又是那种说教节目，没想到小剧场加讲解的形式这么好看，一口气看完了",
        "节目组请的都是专业的老师，讲解深入浅出，连我爸妈都看得津津有味",
        "唯一的缺点就是太短了，每次刚看进去就结束了，强烈建议出加长版",
        "舞台设计和灯光真的是电影级别的，央视的审美在线",
        "前面几期节奏还可以，这一期小剧场拖得有点长，希望后面改进",
        "看了好几遍《{show}》，每次都能发现新的细节，镜头语言太讲究了",
        "{host}的串词太有文采了，感觉每一句都可以摘抄下来",
        "周末晚上和家人一起看《{show}》，已经成了我们家的固定节目",
        "这一季请的明星有点多，感觉流量味重了，还是喜欢第一季那种朴素的感觉",
        "演员的台词和走位都很讲究，能看出来排练了很多遍，不是随便糊弄的",
    ),
    HERITAGE: (
        "以前去博物馆只是走马观花，看了节目才知道{relic}背后还有这么多故事，下次一定好好看",
        "{relic}是{dynasty}的东西，想想几千年前的工匠一点点做出来就觉得不可思议",
        "查了一下资料，{figure}的经历比节目里讲的还要曲折，真的是一个了不起的人",
        "王希孟画完千里江山图之后就在历史上消失了，留下这么一幅画，想想就很遗憾",
        "有人知道{relic}平时展不展吗？专门想去{museum}看一眼真品",
        "古人没有现代的工具，却能做出{relic}这么精细的东西，真的要给工匠们跪了",
        "《{book}》能流传到今天太不容易了，不知道经历了多少战乱和多少人的守护",
        "去年在{museum}排了两个小时队才看到{relic}，人山人海但是值得",
    ),
    CULTURE: (
        "看着看着就哭了，不是因为悲伤，是因为我们的文明真的太美了，作为中国人好骄傲",
        "希望这样的节目多一点，让更多年轻人知道传统文化不是老古董，而是活着的",
        "我们的文化从来都不缺好东西，只是需要有人用新的方式讲给大家听",
        "五千年的文明一脉相承，这种文化的厚度是任何国家都比不了的",
        "小时候觉得古诗词很枯燥，长大了才明白那是我们民族最浪漫的表达",
        "文化的传承不只是保护文物，更是把那份精神一代一代传下去",
        "在国外留学的时候最想念的就是这些，文化是我们走到哪里都带着的根",
    ),
    IRRELEVANT: (
        "今天加班到十点，回家路上还下雨了，打个车排队两百多号，真的心累",
        "有没有人知道哪里能买到{product}，链接发我一下，谢谢家人们",
        "姐妹们，{product}限时秒杀，点我主页链接，手慢无，错过等明年",
        "最近在追《{other}》，有没有一起讨论剧情的，评论区见",
        "抽三个人送{product}，关注+转发+评论即可参与，下周一开奖",
        "室友又在半夜打游戏，键盘声吵得我睡不着，有什么好用的耳塞推荐吗",
    ),
}

# Sentences for long posts (300-800 characters); used in order so the post reads like one text.
LONG = {
    PRODUCTION: (
        "昨晚熬夜把《{show}》补完了，想写点什么记录一下。",
        "首先必须夸一下制作团队，从舞美到灯光到配乐，每一个细节都看得出用心。",
        "小剧场的形式一开始我还担心会尬，结果演员们的表演非常投入，几个片段直接把我看哭了。",
        "{host}的主持风格很稳，不抢戏，但每次开口都能把气氛带起来。",
        "配乐也很加分，古琴和交响乐的结合一点都不违和。",
        "镜头语言很克制，没有那种刻意煽情的慢动作，反而更有力量。",
        "当然也有一些小问题，比如个别环节节奏偏慢，讲解有时候略显冗长。",
        "还有就是播出时间，周末晚上和很多人的安排冲突，希望能多安排几次重播。",
        "特别喜欢每期结尾的那段独白，文案写得太好了，我都截图存下来了。",
        "和第一季相比，这一季的嘉宾阵容更强，但我个人还是更喜欢第一季的那种朴素感。",
        "希望节目组不要为了热度去请太多流量明星，保持现在的水准就很好。",
        "看的时候弹幕特别热闹，大家都在刷“央视yyds”，我也忍不住跟着刷。",
        "听说整个节目筹备了两年多，光是一个小剧场就排练了几十遍，这份认真值得所有的好评。",
        "第一次看是被朋友安利的，本来只打算看一集，结果一晚上刷完了全部。",
        "{person}的表演真的出乎意料，一个眼神就能把人带进那个年代。",
        "节目的节奏整体是舒服的，讲解、表演、访谈穿插着来，不会让人觉得闷。",
        "有几期的特效稍微有点廉价，和整体的质感不太搭，不过也能理解预算有限。",
        "我爸妈平时只看新闻，这个节目他们居然每期都追，还会跟我讨论剧情。",
        "片尾字幕我一直看到最后，幕后工作人员的名单长到滚了好几分钟。",
        "说真的，现在这么用心做内容的节目不多了，且看且珍惜。",
        "但瑕不掩瑜，这是我近几年看过最好的文化类节目之一，豆瓣给了五星。",
        "最后，真心期待下一季，也希望这样的节目能越来越多。",
    ),
    HERITAGE: (
        "今天看到节目里讲{relic}，忍不住查了很多资料。",
        "这件国宝是{dynasty}的，现藏于{museum}，据说平时很少展出。",
        "上学的时候历史课本只有一张模糊的小图，完全想象不到它真实的样子。",
        "节目里展示的细节特别多，比如纹饰上的每一道线条，都是工匠用手一点点刻出来的。",
        "最打动我的是它背后的故事：一代又一代的人为了保护它，经历了战乱和迁徙。",
        "抗战时期故宫文物南迁，一万多箱文物辗转上万里，几乎没有损失，这本身就是一个奇迹。",
        "我还特意去了解了{figure}的生平，起起落落，却始终没有放弃自己的坚持。",
        "比如苏轼，一生被贬了很多次，黄州、惠州、儋州，越贬越远，却写下了那么多豁达的诗词。",
        "王希孟画《千里江山图》的时候才十八岁，之后就在史书里消失了，只留下这一幅青绿山水。",
        "司马迁在最屈辱的时候完成了《史记》，这种坚持放在今天也很难想象。",
        "宋应星把当时的农业和手工业技术都写进了《天工开物》，可惜这本书在国内一度失传。",
        "这些文物和典籍能保存到今天，离不开无数考古工作者和文物修复师的付出。",
        "{relic}这样的东西，放在今天用最先进的技术都未必能复刻出来。",
        "查资料的时候才发现，关于它的来历学界还有不少争论，每一种说法都很有意思。",
        "古人没有显微镜，没有电脑，全凭一双手和世代相传的经验。",
        "我最喜欢的还是{figure}的那段故事，一个人在历史的洪流里能做的很有限，却依然做到了极致。",
        "还有《{book}》，以前只觉得是一本古书，现在才知道它背后有那么多人的守护和传承。",
        "在{dynasty}能做出这样的东西，需要调动多少人力物力，想想都觉得震撼。",
        "讲解员说，很多文物出土的时候已经碎成几十片，是修复师一片一片拼起来的。",
        "历史不只是课本上的年份和人名，而是一个个真实生活过的人留下的痕迹。",
        "看完之后我在笔记本上记下了好几件想看的文物，准备一件件去打卡。",
        "下个月打算专门去一趟{museum}，亲眼看看这些只在屏幕上见过的宝贝。",
    ),
    CULTURE: (
        "看完节目一直在想，我们为什么会被这些东西打动。",
        "也许是因为它们身上有一种东西，是刻在每一个中国人骨子里的。",
        "五千年的文明，经历了那么多的战乱和变迁，却从来没有中断过，这本身就是一种奇迹。",
        "我们常说文化自信，但文化自信不是口号，而是真正了解自己的文化之后生出来的底气。",
        "小时候总觉得传统文化离自己很远，是课本里需要背诵的东西。",
        "长大后才慢慢明白，它就在我们说的每一句话、写的每一个字、过的每一个节日里。",
        "所谓文化，不是博物馆里冰冷的展品，而是我们每个人血脉里的记忆。",
        "现在很多年轻人开始穿汉服、逛博物馆、读古诗，这让我觉得很欣慰。",
        "传统文化需要传承，更需要创新，只有和现代生活结合起来，才能真正活下去。",
        "作为一个普通人，我能做的也许只是多了解一点，多分享一点，让身边的人也感受到这份美。",
        "希望有一天，全世界都能看到中国文化的魅力，不是通过别人的讲述，而是通过我们自己。",
        "何其有幸，生于华夏，见过山河壮丽，也读过千年诗篇。",
        "这就是中国人的浪漫，含蓄、深沉，却又无比坚定。",
        "前几天带着侄子去博物馆，他看着那些文物问我为什么古人要做这么复杂的东西。",
        "我想了半天，只能告诉他，因为那是他们心里的美，也是我们今天依然能感受到的美。",
        "有人说传统文化是老古董，可我觉得它从来没有离开，只是换了一种方式活在我们身边。",
        "春节贴春联，端午吃粽子，中秋赏月，这些习惯本身就是文化最好的传承。",
        "一个民族如果忘记了自己从哪里来，就很难知道自己要到哪里去。",
        "我们这一代人很幸运，可以用这么多新的方式去接触、去理解我们自己的文化。",
        "文化自信从来不是排斥别人，而是在了解了世界之后，依然深爱自己的根。",
        "文明的火种从来没有熄灭，它一直在一代又一代人的手中传递。",
        "愿我们的文化生生不息，愿每一个中国人都能为此骄傲。",
    ),
    IRRELEVANT: (
        "今天真的是水逆的一天，早上闹钟没响，急急忙忙出门还忘带了工牌。",
        "到了公司发现电梯坏了，爬了十八楼，到工位的时候已经快虚脱了。",
        "中午点的外卖送错了，打电话给商家半天没人接，最后只能吃泡面。",
        "下午开了三个会，一个比一个长，什么结论都没有。",
        "晚上下班又赶上下雨，打车排了两百多号，站在路边等了快一个小时。",
        "回家一看，猫把我新买的绿植啃得乱七八糟，真的哭笑不得。",
        "有时候真的觉得成年人的生活好难，每天都在为一些小事焦虑。",
        "不过想想明天是周五了，又觉得还能再坚持一下。",
        "打算周末什么都不干，就在家睡觉、追剧、吃火锅。",
        "晚上本来想早点睡，结果刷手机刷到了一点多，又是熬夜的一天。",
        "说起来最近真的好穷，信用卡账单一出来人都傻了。",
        "室友说周末想去爬山，我一想到要早起就直接拒绝了。",
        "对了，有没有人有{product}的优惠券，求分享一下。",
        "有没有人推荐一下最近好看的剧，《{other}》看完了有点剧荒。",
        "另外求推荐好用的{product}，最近皮肤状态特别差，换季真的好烦。",
        "写了这么多其实就是想找个地方吐槽一下，谢谢看到这里的你。",
        "祝大家周末愉快，晚安。",
    ),
}

# Very short comments (1-4 characters).
SHORT = {
    PRODUCTION: ("好看", "绝了", "催更", "追！", "二刷", "好看哭", "下一季呢", "好评"),
    HERITAGE: ("好美的鼎", "国宝！", "想看真品", "苏轼！", "好精致", "老祖宗牛"),
    CULTURE: ("骄傲！", "中国浪漫", "文化自信", "华夏！", "传承！", "泱泱华夏"),
    IRRELEVANT: ("沙发", "早", "嗯嗯", "来了", "[doge]", "1", "？", "顶", "mark"),
}
# Emoji-only comments, labeled irrelevant (emoji unrelated to the show).
EMOJI_SHORT = ("👍", "🙏🙏🙏", "😂😂😂", "👍👍", "❤️❤️❤️", "🔥🔥", "😭😭😭😭", "🌸✨")

# Clauses from another class, appended now and then so classes are not trivially separable.
TAILS = {
    PRODUCTION: ("节目组用心了", "这节目做得真好", "下一期快点来", "主持人也好棒"),
    HERITAGE: ("想去博物馆看真品", "古人太厉害了", "想知道更多文物的故事"),
    CULTURE: ("为祖国骄傲", "这就是中国人的浪漫", "文化自信", "传统文化yyds"),
    IRRELEVANT: ("顺便抽个奖", "早点睡吧各位", "有人一起吗", "先转发再看"),
}

# Two comments that annotators labeled differently: each appears twice, with both labels.
CONFLICTS = (
    ("《只此青绿》太美了，这就是中国人的浪漫😭", PRODUCTION, CULTURE),
    ("跟着#国家宝藏#去国博打卡了，不虚此行", HERITAGE, IRRELEVANT),
)

# The unlabeled file's one emoji-only comment. These emoji are not in the bert-base-chinese vocabulary, so the
# comment tokenizes to [UNK] only and the labeling job flags it instead of trusting its label.
EMOJI_ONLY = "😭😭😭🙏🙏🥺🥺"

# Simplified -> traditional for the occasional Hong Kong / Taiwan style comment.
TRADITIONAL = dict(
    zip(
        "国宝节传统华这个们说话来时视画历艺术东乐书为见长开爱学观张纪录剧骄让还没对现"
        "实欢气听声词诗经里钟剑编动觉会语读写种样过么吗馆灵马龙泪汉苏轼宁",
        "國寶節傳統華這個們說話來時視畫歷藝術東樂書為見長開愛學觀張紀錄劇驕讓還沒對現"
        "實歡氣聽聲詞詩經裡鐘劍編動覺會語讀寫種樣過麼嗎館靈馬龍淚漢蘇軾寧",
        strict=True,
    )
)

# Words that tie a comment to one show, so its topic tag names that show.
SHOW_HINTS = {"唐宫": "唐宫夜宴", "河南卫视": "唐宫夜宴", "青绿腰": "只此青绿", "一集才五分钟": "如果国宝会说话"}

# ---------------------------------------------------------------------------------------------------------------
# Generator
# ---------------------------------------------------------------------------------------------------------------

_FORMATTER = string.Formatter()


def dedup_key(text: str) -> str:
    """Key used to keep the generated base rows distinct (ignores whitespace, width and case)."""
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text)).casefold()


def has_text(text: str) -> bool:
    """True if the comment has at least one letter or digit (any script)."""
    return any(unicodedata.category(ch)[0] in "LN" for ch in text)


def is_emoji_only(text: str) -> bool:
    return not has_text(text) and any(unicodedata.category(ch) == "So" for ch in text)


class CommentMaker:
    """Builds one comment at a time from the pools, drawing every random choice from ``rng``."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    # -- filling placeholders -----------------------------------------------------------------------------------

    def context(self) -> dict[str, str]:
        """One consistent set of fillers per comment (same show, relic, figure... across its clauses)."""
        r = self.rng
        show = r.choice(SHOWS)
        relic, museum, dynasty = r.choice(RELICS)
        poet, poem = r.choice(POEMS)
        return {
            "show": show.name,
            "tag": show.tag,
            "kind": show.kind,
            "host": r.choice(show.hosts) if show.hosts else "",
            "person": r.choice(show.people),
            "relic": relic,
            "museum": museum,
            "dynasty": dynasty,
            "figure": r.choice(FIGURES),
            "book": r.choice(BOOKS),
            "poet": poet,
            "poem": poem,
            "other": r.choice(OTHER_SHOWS),
            "product": r.choice(PRODUCTS),
            "user": r.choice(USERS),
            "n": str(r.randint(1, 12)),
            "season": r.choice(("二", "三", "四", "五")),
            "score": f"9.{r.randint(0, 6)}",
        }

    def fill(self, templates: list[str], ctx: dict[str, str]) -> list[str]:
        """Fill the templates of one comment; if any needs a host, the comment is about a show that has one."""
        fields = {name for template in templates for _, name, _, _ in _FORMATTER.parse(template) if name}
        if "host" in fields and not ctx["host"]:
            show = self.rng.choice([s for s in SHOWS if s.hosts])
            ctx.update(show=show.name, tag=show.tag, kind=show.kind, host=self.rng.choice(show.hosts))
            ctx["person"] = self.rng.choice(show.people)
        return [template.format(**ctx) for template in templates]

    # -- styling ------------------------------------------------------------------------------------------------

    def emojis(self, lo: int = 1, hi: int = 3) -> str:
        r = self.rng
        if r.random() < 0.4:  # the same emoji repeated, very common on Weibo
            return r.choice(EMOJI) * r.randint(lo, hi + 1)
        return "".join(r.choice(EMOJI) for _ in range(r.randint(lo, hi)))

    def laugh(self) -> str:
        return self.rng.choice(("哈" * self.rng.randint(3, 8), "hhhh", "233333", "笑死"))

    def to_traditional(self, text: str, share: float) -> str:
        return "".join(TRADITIONAL.get(ch, ch) if self.rng.random() < share else ch for ch in text)

    @staticmethod
    def tag_for(text: str, ctx: dict[str, str]) -> str:
        """The comment's topic tag: the show it names, else the comment's show."""
        for show in SHOWS:
            if f"《{show.name}》" in text:
                return show.tag
        for hint, tag in SHOW_HINTS.items():
            if hint in text:
                return tag
        return ctx["tag"]

    def decorate(self, text: str, label: int, ctx: dict[str, str]) -> str:
        r = self.rng
        tag = self.tag_for(text, ctx)
        irrelevant = label == IRRELEVANT
        if label != IRRELEVANT and r.random() < 0.10:
            other = r.choice([c for c in TAILS if c != label])
            text = f"{text}，{r.choice(TAILS[other])}"
        if r.random() < 0.10:
            text = f"{r.choice(SLANG)}！{text}" if r.random() < 0.5 else f"{text}，{r.choice(SLANG)}"
        if r.random() < 0.05:
            text = f"{text} {r.choice(ENGLISH)}"
        if r.random() < 0.10:
            text = f"{self.laugh()}{text}" if r.random() < 0.5 else f"{text}{self.laugh()}"
        if r.random() < 0.12:
            text = text.rstrip("。，！") + r.choice(("！！！", "!!!", "！！", "？？"))
        # trailing emoji / Weibo emoticons
        if r.random() < (0.40 if irrelevant else 0.30):
            text += self.emojis()
        if r.random() < 0.10:
            text += r.choice(WEIBO_EMOTICONS) * r.randint(1, 3)
        if r.random() < 0.05:  # emoji-heavy
            text = f"{self.emojis(2, 4)}{text}{self.emojis(4, 8)}"
        # Weibo furniture: topic tags, mentions, replies, reposts, check-ins
        roll = r.random()
        if roll < 0.16:
            text = f"#{tag}# {text}"
        elif roll < 0.20:
            text = f"{text} #{tag}#"
        elif roll < 0.26:
            text = f"@{ctx['user']} {text}"
        elif roll < 0.30:
            text = f"回复@{ctx['user']}:{text}"
        elif roll < 0.33:
            text = f"{text}//@{ctx['user']}:"
        elif roll < (0.40 if irrelevant else 0.35):
            text = f"转发微博 {text}" if irrelevant else f"打卡 {text}"
        # traditional characters, whole comment or a mix
        roll = r.random()
        if roll < 0.03:
            text = self.to_traditional(text, 1.0)
        elif roll < 0.06:
            text = self.to_traditional(text, 0.5)
        return text

    # -- comment shapes -----------------------------------------------------------------------------------------

    def short(self, label: int, text_only: bool = False) -> str:
        pool = [s for s in SHORT[label] if has_text(s) or not text_only]
        return self.rng.choice(pool)

    def normal(self, label: int) -> str:
        """Typical comment, mostly 5-40 characters."""
        r = self.rng
        ctx = self.context()
        templates = [r.choice(CLAUSES[label])]
        if r.random() < 0.25:
            templates.append(r.choice([t for t in CLAUSES[label] if t != templates[0]]))
        text, *more = self.fill(templates, ctx)
        if more and len(text) + len(more[0]) <= 32:
            text = f"{text}{r.choice(('，', '！', ' ', '。'))}{more[0]}"
        text = self.decorate(text, label, ctx)
        while len(text) < 5:
            text += self.emojis()
        return text

    def medium(self, label: int) -> str:
        """Comment of about 40-120 characters."""
        r = self.rng
        for _ in range(50):
            ctx = self.context()
            templates = [r.choice(MEDIUM[label])]
            if r.random() < 0.6:
                templates.append(r.choice(CLAUSES[label]))
            parts = self.fill(templates, ctx)
            r.shuffle(parts)
            text = self.decorate("，".join(parts), label, ctx)
            if 40 <= len(text) <= 120:
                return text
        raise RuntimeError("could not build a medium comment")  # pragma: no cover

    def long(self, label: int, lo: int = 300, hi: int = 800) -> str:
        """Long reflective post: the class's opening sentence, a shuffled selection of the others, its closing one."""
        r = self.rng
        ctx = self.context()
        target = r.randint(lo + 20, hi - 30)
        filled = self.fill([*LONG[label], *MEDIUM[label]], ctx)
        opener, *middle, closer = filled[: len(LONG[label])]
        body = middle + [s + "。" for s in filled[len(LONG[label]) :]]
        r.shuffle(body)
        chosen = [opener]
        for sentence in body:  # take sentences while they fit, so the post ends up close to the target
            if sum(map(len, chosen)) + len(sentence) + len(closer) <= target:
                chosen.append(sentence)
        chosen.append(closer)
        if r.random() < 0.5:  # paragraphs
            cut = sorted(r.sample(range(1, len(chosen)), k=min(2, len(chosen) - 1)))
            paragraphs = ["".join(p) for p in (chosen[: cut[0]], chosen[cut[0] : cut[-1]], chosen[cut[-1] :]) if p]
            text = "\n".join(paragraphs)
        else:
            text = "".join(chosen)
        if r.random() < 0.5:
            text = f"#{ctx['tag']}# {text}"
        if r.random() < 0.5:
            text += self.emojis()
        assert lo <= len(text) <= hi, len(text)
        return text

    def essay(self, target: int = 2000) -> str:
        """One very long (about ``target`` characters) post mixing all the long pools, like a pasted essay."""
        ctx = self.context()
        pools = [LONG[HERITAGE], LONG[CULTURE], LONG[PRODUCTION], MEDIUM[HERITAGE], MEDIUM[CULTURE]]
        sentences = [s.rstrip("。") + "。" for s in self.fill([s for pool in pools for s in pool], ctx)]
        text = "【长文预警】"
        i = 0
        while len(text) < target:
            text += sentences[i % len(sentences)]
            i += 1
        return f"#{ctx['tag']}# {text}🙏"

    def make(self, label: int, shape: str, text_only: bool = False) -> str:
        if shape == "emoji":
            return self.rng.choice(EMOJI_SHORT)
        if shape == "short":
            return self.short(label, text_only)
        if shape == "long":
            return self.long(label)
        if shape == "medium":
            return self.medium(label)
        return self.normal(label)


def plan_shapes(rng: random.Random, n: int, n_short: int, n_long: int, n_emoji: int, p_medium: float) -> list[str]:
    shapes = ["short"] * n_short + ["long"] * n_long + ["emoji"] * n_emoji
    shapes += ["medium" if rng.random() < p_medium else "normal" for _ in range(n - len(shapes))]
    rng.shuffle(shapes)
    return shapes


def generate_unique(
    maker: CommentMaker,
    counts: dict[int, int],
    shorts: dict[int, int],
    longs: dict[int, int],
    seen: set[str],
    n_emoji_only: int = 0,
) -> list[tuple[str, int]]:
    """Distinct (by ``dedup_key``) comments, ``counts[label]`` per class.

    ``n_emoji_only`` irrelevant rows are emoji-only; with ``n_emoji_only=0`` every row has some text.
    """
    rows = []
    for label, n in counts.items():
        n_emoji = n_emoji_only if label == IRRELEVANT else 0
        for shape in plan_shapes(maker.rng, n, shorts[label], longs[label], n_emoji, p_medium=0.18):
            for _ in range(200):
                text = maker.make(label, shape, text_only=n_emoji_only == 0)
                if dedup_key(text) not in seen:
                    break
            else:  # pragma: no cover
                raise RuntimeError(f"pool too small for label {label} / {shape}")
            seen.add(dedup_key(text))
            rows.append((text, label))
    return rows


def whitespace_variant(text: str, kind: int) -> str:
    if kind == 0:
        return " " + text
    if kind == 1:
        return text + "  "
    if kind == 2:
        return " " + text + " "
    return text.replace(" ", "  ", 1)  # needs a text with a space


# ---------------------------------------------------------------------------------------------------------------
# Datasets
# ---------------------------------------------------------------------------------------------------------------

LABELED_BASE = {PRODUCTION: 137, HERITAGE: 115, CULTURE: 115, IRRELEVANT: 94}
LABELED_SHORT = {PRODUCTION: 3, HERITAGE: 3, CULTURE: 3, IRRELEVANT: 3}
LABELED_EMOJI_ONLY = 3  # irrelevant rows
LABELED_LONG = {PRODUCTION: 2, HERITAGE: 2, CULTURE: 2, IRRELEVANT: 1}
N_EXACT_DUPLICATES = 10
N_WHITESPACE_DUPLICATES = 5

UNLABELED_BASE = {PRODUCTION: 88, HERITAGE: 73, CULTURE: 73, IRRELEVANT: 59}
UNLABELED_SHORT = {PRODUCTION: 2, HERITAGE: 2, CULTURE: 2, IRRELEVANT: 2}
UNLABELED_LONG = {PRODUCTION: 1, HERITAGE: 1, CULTURE: 1, IRRELEVANT: 1}
N_UNLABELED_EMPTY = 3
N_UNLABELED_DUPLICATES = 2


def make_labeled(seed: int = LABELED_SEED) -> pd.DataFrame:
    rng = random.Random(seed)
    maker = CommentMaker(rng)
    seen = {dedup_key(text) for text, _, _ in CONFLICTS}
    rows = generate_unique(maker, LABELED_BASE, LABELED_SHORT, LABELED_LONG, seen, LABELED_EMOJI_ONLY)
    # deliberate oddities, drawn from distinct source rows
    sources = rng.sample(range(len(rows)), N_EXACT_DUPLICATES + N_WHITESPACE_DUPLICATES)
    extra = [rows[i] for i in sources[:N_EXACT_DUPLICATES]]
    ws_sources = sources[N_EXACT_DUPLICATES:]
    spaced = [i for i in range(len(rows)) if " " in rows[i][0].strip() and i not in sources]
    ws_sources[-1] = rng.choice(spaced)  # one variant turns an existing space into a double space
    for kind, i in zip((0, 1, 2, 0, 3), ws_sources, strict=True):
        extra.append((whitespace_variant(rows[i][0], kind), rows[i][1]))
    for text, label_a, label_b in CONFLICTS:
        rows.append((text, label_a))
        extra.append((text, label_b))
    rows += extra
    rng.shuffle(rows)
    return pd.DataFrame(rows, columns=["Sentence", "Label"]).astype({"Label": "int64"})


def make_unlabeled(labeled: pd.DataFrame, seed: int = UNLABELED_SEED) -> pd.DataFrame:
    """Unlabeled comments; only very short, generic ones (up to 8 characters) may also be in ``labeled``."""
    rng = random.Random(seed)
    maker = CommentMaker(rng)
    seen = {dedup_key(EMOJI_ONLY)} | {dedup_key(t) for t in labeled["Sentence"] if len(t.strip()) > 8}
    rows = generate_unique(maker, UNLABELED_BASE, UNLABELED_SHORT, UNLABELED_LONG, seen)
    texts: list[str | None] = [text for text, _ in rows]
    texts += rng.sample(texts, N_UNLABELED_DUPLICATES)
    texts += [EMOJI_ONLY, maker.essay(2000)]
    texts += [None] * N_UNLABELED_EMPTY
    rng.shuffle(texts)
    return pd.DataFrame({"Sentence": texts})


def summarize(name: str, df: pd.DataFrame) -> None:
    text = df["Sentence"]
    lengths = text.dropna().str.len()
    keys = text.dropna().map(dedup_key)
    print(f"{name}: {len(df)} rows")
    if "Label" in df:
        counts = df["Label"].value_counts().sort_index()
        print("  classes:", ", ".join(f"{k} {LABEL_NAMES[k]}={v} ({v / len(df):.0%})" for k, v in counts.items()))
        conflicts = df.groupby("Sentence")["Label"].nunique().gt(1).sum()
        print(f"  conflicting duplicated comments: {conflicts}")
    print(f"  empty cells: {text.isna().sum()}, emoji-only: {text.dropna().map(is_emoji_only).sum()}")
    exact, normalised = text.dropna().duplicated().sum(), keys.duplicated().sum()
    print(f"  exact duplicate rows: {exact}, after whitespace normalisation: {normalised}")
    q = lengths.quantile([0.1, 0.5, 0.9])
    print(
        f"  length p10/p50/p90/max: {q[0.1]:.0f}/{q[0.5]:.0f}/{q[0.9]:.0f}/{lengths.max()}, "
        f"<5: {(lengths < 5).sum()}, 5-40: {lengths.between(5, 40).sum()}, 41-120: {lengths.between(41, 120).sum()}, "
        f">120: {(lengths > 120).sum()}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    labeled = make_labeled()
    for name, df in (("labeled_sample.xlsx", labeled), ("unlabeled_sample.xlsx", make_unlabeled(labeled))):
        df.to_excel(args.out_dir / name, index=False, sheet_name="Sheet1")
        summarize(name, df)


if __name__ == "__main__":
    main()
