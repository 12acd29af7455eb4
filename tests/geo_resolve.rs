//! Table-driven resolver tests across all 34 provincial-level divisions.
//!
//! Every expected value comes from outside the code: area codes are the
//! published Chinese long-distance codes (0451 is Harbin, 020 Guangzhou …),
//! the mobile prefixes are the samples checked in `shared/reference/data-sources.md`,
//! and coordinates are points a few kilometres from each city centre.

use almanac::campaign::ClimateMetric;
use almanac::geo::{CityLookupError, Geo, GeoConfig, LocationHints, PlaceSource, ResolveError};

/// (number as written, expected city, expected province).
const PHONES: &[(&str, &str, &str)] = &[
    // Municipalities and the big area codes.
    ("010-6512 3456", "Beijing", "Beijing"),
    ("021 6321 4567", "Shanghai", "Shanghai"),
    ("022-2345 6789", "Tianjin", "Tianjin"),
    ("023 6388 1234", "Chongqing", "Chongqing"),
    ("020-8888 1234", "Guangzhou", "Guangdong"),
    ("+86 20 8888 1234", "Guangzhou", "Guangdong"),
    ("0086 20 8888 1234", "Guangzhou", "Guangdong"),
    ("025-8456 7890", "Nanjing", "Jiangsu"),
    ("027 8765 4321", "Wuhan", "Hubei"),
    ("028-8555 1234", "Chengdu", "Sichuan"),
    ("029-8765 4321", "Xi'an", "Shaanxi"),
    ("024-2345 6789", "Shenyang", "Liaoning"),
    // Mobile prefixes.
    ("13904511234", "Harbin", "Heilongjiang"),
    ("+86 139 0451 1234", "Harbin", "Heilongjiang"),
    ("0086-139-0451-1234", "Harbin", "Heilongjiang"),
    ("+86 130 0098 7654", "Harbin", "Heilongjiang"),
    ("138 0451 0000", "Harbin", "Heilongjiang"),
    ("138-0020-1234", "Guangzhou", "Guangdong"),
    ("+8613922201234", "Guangzhou", "Guangdong"),
    ("13800138000", "Beijing", "Beijing"),
    // Hebei
    ("0311-8765 4321", "Shijiazhuang", "Hebei"),
    ("0310-312 3456", "Handan", "Hebei"),
    ("0312-312 3456", "Baoding", "Hebei"),
    ("0313-412 3456", "Zhangjiakou", "Hebei"),
    ("0314-212 3456", "Chengde", "Hebei"),
    ("0315-212 3456", "Tangshan", "Hebei"),
    ("0316-212 3456", "Langfang", "Hebei"),
    ("0317-212 3456", "Cangzhou", "Hebei"),
    ("0318-212 3456", "Hengshui", "Hebei"),
    ("0319-212 3456", "Xingtai", "Hebei"),
    ("0335-312 3456", "Qinhuangdao", "Hebei"),
    // Shanxi
    ("0351-412 3456", "Taiyuan", "Shanxi"),
    ("0352-212 3456", "Datong", "Shanxi"),
    ("0353-212 3456", "Yangquan", "Shanxi"),
    ("0355-212 3456", "Changzhi", "Shanxi"),
    ("0356-212 3456", "Jincheng", "Shanxi"),
    ("0357-212 3456", "Linfen", "Shanxi"),
    ("0359-212 3456", "Yuncheng", "Shanxi"),
    ("0350-212 3456", "Xinzhou", "Shanxi"),
    // Henan
    ("0371-6123 4567", "Zhengzhou", "Henan"),
    ("0372-212 3456", "Anyang", "Henan"),
    ("0373-212 3456", "Xinxiang", "Henan"),
    ("0374-212 3456", "Xuchang", "Henan"),
    ("0375-212 3456", "Pingdingshan", "Henan"),
    ("0376-212 3456", "Xinyang", "Henan"),
    ("0377-6212 3456", "Nanyang", "Henan"),
    ("0379-6212 3456", "Luoyang", "Henan"),
    ("0370-212 3456", "Shangqiu", "Henan"),
    ("0391-212 3456", "Jiaozuo", "Henan"),
    ("0392-212 3456", "Hebi", "Henan"),
    ("0393-212 3456", "Puyang", "Henan"),
    ("0394-212 3456", "Zhoukou", "Henan"),
    ("0395-212 3456", "Luohe", "Henan"),
    ("0396-212 3456", "Zhumadian", "Henan"),
    ("0398-212 3456", "Sanmenxia", "Henan"),
    // Liaoning
    ("0411-8212 3456", "Dalian", "Liaoning"),
    ("0412-212 3456", "Anshan", "Liaoning"),
    ("0415-212 3456", "Dandong", "Liaoning"),
    ("0416-212 3456", "Jinzhou", "Liaoning"),
    ("0417-212 3456", "Yingkou", "Liaoning"),
    ("0418-212 3456", "Fuxin", "Liaoning"),
    ("0419-212 3456", "Liaoyang", "Liaoning"),
    ("0421-212 3456", "Chaoyang", "Liaoning"),
    ("0427-212 3456", "Panjin", "Liaoning"),
    ("0429-212 3456", "Huludao", "Liaoning"),
    // Jilin
    ("0431-8212 3456", "Changchun", "Jilin"),
    ("0432-6212 3456", "Jilin", "Jilin"),
    ("0434-212 3456", "Siping", "Jilin"),
    ("0436-212 3456", "Baicheng", "Jilin"),
    ("0437-212 3456", "Liaoyuan", "Jilin"),
    ("0438-212 3456", "Songyuan", "Jilin"),
    ("0439-212 3456", "Baishan", "Jilin"),
    ("0433-212 3456", "Yanbian", "Jilin"),
    // Heilongjiang
    ("0451-8212 3456", "Harbin", "Heilongjiang"),
    ("+86 451 8212 3456", "Harbin", "Heilongjiang"),
    ("0452-212 3456", "Qiqihar", "Heilongjiang"),
    ("0453-212 3456", "Mudanjiang", "Heilongjiang"),
    ("0454-212 3456", "Jiamusi", "Heilongjiang"),
    ("0455-212 3456", "Suihua", "Heilongjiang"),
    ("0456-212 3456", "Heihe", "Heilongjiang"),
    ("0457-212 3456", "Da Hinggan Ling", "Heilongjiang"),
    ("0458-212 3456", "Yichun", "Heilongjiang"),
    ("0459-612 3456", "Daqing", "Heilongjiang"),
    ("0464-212 3456", "Qitaihe", "Heilongjiang"),
    ("0467-212 3456", "Jixi", "Heilongjiang"),
    ("0468-212 3456", "Hegang", "Heilongjiang"),
    ("0469-212 3456", "Shuangyashan", "Heilongjiang"),
    // Inner Mongolia
    ("0471-612 3456", "Hohhot", "Inner Mongolia"),
    ("0472-512 3456", "Baotou", "Inner Mongolia"),
    ("0473-212 3456", "Wuhai", "Inner Mongolia"),
    ("0474-212 3456", "Ulanqab", "Inner Mongolia"),
    ("0475-212 3456", "Tongliao", "Inner Mongolia"),
    ("0476-212 3456", "Chifeng", "Inner Mongolia"),
    ("0477-212 3456", "Ordos", "Inner Mongolia"),
    ("0478-212 3456", "Bayannur", "Inner Mongolia"),
    ("0479-212 3456", "Xilingol League", "Inner Mongolia"),
    ("0470-212 3456", "Hulunbuir", "Inner Mongolia"),
    ("0482-212 3456", "Hinggan League", "Inner Mongolia"),
    ("0483-212 3456", "Alxa League", "Inner Mongolia"),
    // Jiangsu
    ("0510-8212 3456", "Wuxi", "Jiangsu"),
    ("0511-8212 3456", "Zhenjiang", "Jiangsu"),
    ("0512-6512 3456", "Suzhou", "Jiangsu"),
    ("0513-8212 3456", "Nantong", "Jiangsu"),
    ("0514-8212 3456", "Yangzhou", "Jiangsu"),
    ("0515-8212 3456", "Yancheng", "Jiangsu"),
    ("0516-8212 3456", "Xuzhou", "Jiangsu"),
    ("0517-8212 3456", "Huai'an", "Jiangsu"),
    ("0518-8212 3456", "Lianyungang", "Jiangsu"),
    ("0519-8212 3456", "Changzhou", "Jiangsu"),
    ("0523-8212 3456", "Taizhou", "Jiangsu"),
    ("0527-8212 3456", "Suqian", "Jiangsu"),
    // Shandong
    ("0531-8212 3456", "Jinan", "Shandong"),
    ("0532-8212 3456", "Qingdao", "Shandong"),
    ("0533-212 3456", "Zibo", "Shandong"),
    ("0534-212 3456", "Dezhou", "Shandong"),
    ("0535-212 3456", "Yantai", "Shandong"),
    ("0536-212 3456", "Weifang", "Shandong"),
    ("0537-212 3456", "Jining", "Shandong"),
    ("0538-212 3456", "Tai'an", "Shandong"),
    ("0539-212 3456", "Linyi", "Shandong"),
    ("0530-212 3456", "Heze", "Shandong"),
    ("0543-212 3456", "Binzhou", "Shandong"),
    ("0546-212 3456", "Dongying", "Shandong"),
    ("0631-212 3456", "Weihai", "Shandong"),
    ("0632-212 3456", "Zaozhuang", "Shandong"),
    ("0633-212 3456", "Rizhao", "Shandong"),
    ("0635-212 3456", "Liaocheng", "Shandong"),
    // Anhui
    ("0551-6212 3456", "Hefei", "Anhui"),
    ("0552-212 3456", "Bengbu", "Anhui"),
    ("0553-212 3456", "Wuhu", "Anhui"),
    ("0554-212 3456", "Huainan", "Anhui"),
    ("0555-212 3456", "Ma'anshan", "Anhui"),
    ("0556-212 3456", "Anqing", "Anhui"),
    ("0557-212 3456", "Suzhou", "Anhui"),
    ("0559-212 3456", "Huangshan", "Anhui"),
    ("0561-212 3456", "Huaibei", "Anhui"),
    ("0562-212 3456", "Tongling", "Anhui"),
    ("0563-212 3456", "Xuancheng", "Anhui"),
    ("0564-212 3456", "Lu'an", "Anhui"),
    ("0566-212 3456", "Chizhou", "Anhui"),
    ("0550-212 3456", "Chuzhou", "Anhui"),
    // Zhejiang
    ("0571-8712 3456", "Hangzhou", "Zhejiang"),
    ("0572-212 3456", "Huzhou", "Zhejiang"),
    ("0573-212 3456", "Jiaxing", "Zhejiang"),
    ("0574-8712 3456", "Ningbo", "Zhejiang"),
    ("0575-8712 3456", "Shaoxing", "Zhejiang"),
    ("0576-8812 3456", "Taizhou", "Zhejiang"),
    ("0577-8812 3456", "Wenzhou", "Zhejiang"),
    ("0578-212 3456", "Lishui", "Zhejiang"),
    ("0579-8212 3456", "Jinhua", "Zhejiang"),
    ("0580-212 3456", "Zhoushan", "Zhejiang"),
    ("0570-212 3456", "Quzhou", "Zhejiang"),
    // Fujian
    ("0591-8712 3456", "Fuzhou", "Fujian"),
    ("0592-512 3456", "Xiamen", "Fujian"),
    ("0593-212 3456", "Ningde", "Fujian"),
    ("0594-212 3456", "Putian", "Fujian"),
    ("0595-2212 3456", "Quanzhou", "Fujian"),
    ("0596-212 3456", "Zhangzhou", "Fujian"),
    ("0597-212 3456", "Longyan", "Fujian"),
    ("0598-212 3456", "Sanming", "Fujian"),
    ("0599-212 3456", "Nanping", "Fujian"),
    // Guangdong
    ("0755-8212 3456", "Shenzhen", "Guangdong"),
    ("0754-8812 3456", "Shantou", "Guangdong"),
    ("0756-212 3456", "Zhuhai", "Guangdong"),
    ("0757-8212 3456", "Foshan", "Guangdong"),
    ("0758-212 3456", "Zhaoqing", "Guangdong"),
    ("0759-212 3456", "Zhanjiang", "Guangdong"),
    ("0760-8812 3456", "Zhongshan", "Guangdong"),
    ("0762-212 3456", "Heyuan", "Guangdong"),
    ("0763-212 3456", "Qingyuan", "Guangdong"),
    ("0766-212 3456", "Yunfu", "Guangdong"),
    ("0768-212 3456", "Chaozhou", "Guangdong"),
    ("0769-2212 3456", "Dongguan", "Guangdong"),
    ("0750-212 3456", "Jiangmen", "Guangdong"),
    ("0751-212 3456", "Shaoguan", "Guangdong"),
    ("0752-212 3456", "Huizhou", "Guangdong"),
    ("0753-212 3456", "Meizhou", "Guangdong"),
    ("0660-212 3456", "Shanwei", "Guangdong"),
    ("0662-212 3456", "Yangjiang", "Guangdong"),
    ("0663-212 3456", "Jieyang", "Guangdong"),
    ("0668-212 3456", "Maoming", "Guangdong"),
    // Guangxi
    ("0771-212 3456", "Nanning", "Guangxi"),
    ("0772-212 3456", "Liuzhou", "Guangxi"),
    ("0773-212 3456", "Guilin", "Guangxi"),
    ("0774-212 3456", "Wuzhou", "Guangxi"),
    ("0775-212 3456", "Yulin", "Guangxi"),
    ("0776-212 3456", "Baise", "Guangxi"),
    ("0777-212 3456", "Qinzhou", "Guangxi"),
    ("0778-212 3456", "Hechi", "Guangxi"),
    ("0779-212 3456", "Beihai", "Guangxi"),
    ("0770-212 3456", "Fangchenggang", "Guangxi"),
    // Jiangxi
    ("0791-8612 3456", "Nanchang", "Jiangxi"),
    ("0792-212 3456", "Jiujiang", "Jiangxi"),
    ("0793-212 3456", "Shangrao", "Jiangxi"),
    ("0794-212 3456", "Fuzhou", "Jiangxi"),
    ("0795-212 3456", "Yichun", "Jiangxi"),
    ("0796-212 3456", "Ji'an", "Jiangxi"),
    ("0797-212 3456", "Ganzhou", "Jiangxi"),
    ("0798-212 3456", "Jingdezhen", "Jiangxi"),
    ("0799-212 3456", "Pingxiang", "Jiangxi"),
    ("0790-212 3456", "Xinyu", "Jiangxi"),
    ("0701-212 3456", "Yingtan", "Jiangxi"),
    // Hubei
    ("0710-212 3456", "Xiangyang", "Hubei"),
    ("0711-212 3456", "Ezhou", "Hubei"),
    ("0712-212 3456", "Xiaogan", "Hubei"),
    ("0713-212 3456", "Huanggang", "Hubei"),
    ("0714-212 3456", "Huangshi", "Hubei"),
    ("0715-212 3456", "Xianning", "Hubei"),
    ("0716-212 3456", "Jingzhou", "Hubei"),
    ("0717-212 3456", "Yichang", "Hubei"),
    ("0718-212 3456", "Enshi", "Hubei"),
    ("0719-212 3456", "Shiyan", "Hubei"),
    ("0722-212 3456", "Suizhou", "Hubei"),
    ("0724-212 3456", "Jingmen", "Hubei"),
    // Hunan
    ("0731-8412 3456", "Changsha", "Hunan"),
    ("0730-212 3456", "Yueyang", "Hunan"),
    ("0734-212 3456", "Hengyang", "Hunan"),
    ("0735-212 3456", "Chenzhou", "Hunan"),
    ("0736-212 3456", "Changde", "Hunan"),
    ("0737-212 3456", "Yiyang", "Hunan"),
    ("0738-212 3456", "Loudi", "Hunan"),
    ("0739-212 3456", "Shaoyang", "Hunan"),
    ("0743-212 3456", "Xiangxi", "Hunan"),
    ("0744-212 3456", "Zhangjiajie", "Hunan"),
    ("0745-212 3456", "Huaihua", "Hunan"),
    ("0746-212 3456", "Yongzhou", "Hunan"),
    // Sichuan
    ("0812-212 3456", "Panzhihua", "Sichuan"),
    ("0813-212 3456", "Zigong", "Sichuan"),
    ("0816-212 3456", "Mianyang", "Sichuan"),
    ("0817-212 3456", "Nanchong", "Sichuan"),
    ("0818-212 3456", "Dazhou", "Sichuan"),
    ("0825-212 3456", "Suining", "Sichuan"),
    ("0826-212 3456", "Guang'an", "Sichuan"),
    ("0827-212 3456", "Bazhong", "Sichuan"),
    ("0830-212 3456", "Luzhou", "Sichuan"),
    ("0831-212 3456", "Yibin", "Sichuan"),
    ("0832-212 3456", "Neijiang", "Sichuan"),
    ("0833-212 3456", "Leshan", "Sichuan"),
    ("0834-212 3456", "Liangshan", "Sichuan"),
    ("0835-212 3456", "Ya'an", "Sichuan"),
    ("0838-212 3456", "Deyang", "Sichuan"),
    ("0839-212 3456", "Guangyuan", "Sichuan"),
    // Guizhou
    ("0851-8512 3456", "Guiyang", "Guizhou"),
    ("0854-212 3456", "Qiannan", "Guizhou"),
    ("0855-212 3456", "Qiandongnan", "Guizhou"),
    ("0856-212 3456", "Tongren", "Guizhou"),
    ("0857-212 3456", "Bijie", "Guizhou"),
    ("0858-212 3456", "Liupanshui", "Guizhou"),
    ("0859-212 3456", "Qianxinan", "Guizhou"),
    // Yunnan
    ("0871-6312 3456", "Kunming", "Yunnan"),
    ("0872-212 3456", "Dali", "Yunnan"),
    ("0874-212 3456", "Qujing", "Yunnan"),
    ("0875-212 3456", "Baoshan", "Yunnan"),
    ("0876-212 3456", "Wenshan", "Yunnan"),
    ("0877-212 3456", "Yuxi", "Yunnan"),
    ("0878-212 3456", "Chuxiong", "Yunnan"),
    ("0879-212 3456", "Pu'er", "Yunnan"),
    ("0870-212 3456", "Zhaotong", "Yunnan"),
    ("0883-212 3456", "Lincang", "Yunnan"),
    ("0888-512 3456", "Lijiang", "Yunnan"),
    ("0691-212 3456", "Xishuangbanna", "Yunnan"),
    // Tibet
    ("0891-612 3456", "Lhasa", "Tibet"),
    ("0892-882 3456", "Shigatse", "Tibet"),
    ("0894-582 3456", "Nyingchi", "Tibet"),
    ("0895-482 3456", "Chamdo", "Tibet"),
    // Hainan
    ("0898-6612 3456", "Haikou", "Hainan"),
    // Shaanxi
    ("0919-212 3456", "Tongchuan", "Shaanxi"),
    ("0913-212 3456", "Weinan", "Shaanxi"),
    ("0911-212 3456", "Yan'an", "Shaanxi"),
    ("0912-212 3456", "Yulin", "Shaanxi"),
    ("0916-212 3456", "Hanzhong", "Shaanxi"),
    ("0917-212 3456", "Baoji", "Shaanxi"),
    ("0915-212 3456", "Ankang", "Shaanxi"),
    ("0914-212 3456", "Shangluo", "Shaanxi"),
    // Gansu
    ("0931-812 3456", "Lanzhou", "Gansu"),
    ("0932-212 3456", "Dingxi", "Gansu"),
    ("0933-212 3456", "Pingliang", "Gansu"),
    ("0934-212 3456", "Qingyang", "Gansu"),
    ("0936-212 3456", "Zhangye", "Gansu"),
    ("0938-212 3456", "Tianshui", "Gansu"),
    ("0939-212 3456", "Longnan", "Gansu"),
    ("0941-212 3456", "Gannan", "Gansu"),
    ("0943-212 3456", "Baiyin", "Gansu"),
    ("0930-212 3456", "Linxia", "Gansu"),
    // Qinghai
    ("0971-612 3456", "Xining", "Qinghai"),
    ("0972-212 3456", "Haidong", "Qinghai"),
    ("0973-212 3456", "Huangnan", "Qinghai"),
    ("0975-212 3456", "Golog", "Qinghai"),
    ("0976-212 3456", "Yushu", "Qinghai"),
    ("0970-212 3456", "Haibei", "Qinghai"),
    // Ningxia
    ("0951-512 3456", "Yinchuan", "Ningxia"),
    ("0952-212 3456", "Shizuishan", "Ningxia"),
    ("0953-212 3456", "Wuzhong", "Ningxia"),
    ("0954-212 3456", "Guyuan", "Ningxia"),
    ("0955-712 3456", "Zhongwei", "Ningxia"),
    // Xinjiang
    ("0991-212 3456", "Ürümqi", "Xinjiang"),
    ("0990-612 3456", "Karamay", "Xinjiang"),
    ("0998-212 3456", "Kashgar", "Xinjiang"),
    ("0997-212 3456", "Aksu", "Xinjiang"),
    ("0996-212 3456", "Bayingolin", "Xinjiang"),
    ("0995-812 3456", "Turpan", "Xinjiang"),
    ("0994-212 3456", "Changji", "Xinjiang"),
    ("0903-212 3456", "Hotan", "Xinjiang"),
    ("0902-212 3456", "Hami", "Xinjiang"),
    ("0901-612 3456", "Tacheng", "Xinjiang"),
    ("0906-212 3456", "Altay", "Xinjiang"),
    ("0909-212 3456", "Bortala", "Xinjiang"),
    ("0999-812 3456", "Ili", "Xinjiang"),
    ("0908-412 3456", "Kizilsu", "Xinjiang"),
];

/// (name, province hint, expected city, expected province or region).
const NAMES: &[(&str, Option<&str>, &str, &str)] = &[
    ("北京", None, "Beijing", "Beijing"),
    ("Beijing", None, "Beijing", "Beijing"),
    ("上海市", None, "Shanghai", "Shanghai"),
    ("天津", None, "Tianjin", "Tianjin"),
    ("重庆", None, "Chongqing", "Chongqing"),
    ("石家庄", None, "Shijiazhuang", "Hebei"),
    ("太原", None, "Taiyuan", "Shanxi"),
    ("呼和浩特", None, "Hohhot", "Inner Mongolia"),
    ("沈阳", None, "Shenyang", "Liaoning"),
    ("长春", None, "Changchun", "Jilin"),
    ("吉林市", None, "Jilin", "Jilin"),
    ("哈尔滨", None, "Harbin", "Heilongjiang"),
    ("harbin", None, "Harbin", "Heilongjiang"),
    ("南京", None, "Nanjing", "Jiangsu"),
    ("苏州", None, "Suzhou", "Jiangsu"),
    ("苏州", Some("江苏"), "Suzhou", "Jiangsu"),
    ("宿州", None, "Suzhou", "Anhui"),
    ("Suzhou", Some("Jiangsu"), "Suzhou", "Jiangsu"),
    ("Suzhou", Some("Anhui"), "Suzhou", "Anhui"),
    ("Suzhou", Some("安徽省"), "Suzhou", "Anhui"),
    ("杭州", None, "Hangzhou", "Zhejiang"),
    ("合肥", None, "Hefei", "Anhui"),
    ("福州", None, "Fuzhou", "Fujian"),
    ("Fuzhou", Some("Jiangxi"), "Fuzhou", "Jiangxi"),
    ("南昌", None, "Nanchang", "Jiangxi"),
    ("济南", None, "Jinan", "Shandong"),
    ("郑州", None, "Zhengzhou", "Henan"),
    ("武汉", None, "Wuhan", "Hubei"),
    ("长沙", None, "Changsha", "Hunan"),
    ("广州", None, "Guangzhou", "Guangdong"),
    ("Guangzhou", None, "Guangzhou", "Guangdong"),
    ("南宁", None, "Nanning", "Guangxi"),
    ("海口", None, "Haikou", "Hainan"),
    ("成都", None, "Chengdu", "Sichuan"),
    ("贵阳", None, "Guiyang", "Guizhou"),
    ("昆明", None, "Kunming", "Yunnan"),
    ("拉萨", None, "Lhasa", "Tibet"),
    ("西安", None, "Xi'an", "Shaanxi"),
    ("Xian", None, "Xi'an", "Shaanxi"),
    ("兰州", None, "Lanzhou", "Gansu"),
    ("西宁", None, "Xining", "Qinghai"),
    ("银川", None, "Yinchuan", "Ningxia"),
    ("乌鲁木齐", None, "Ürümqi", "Xinjiang"),
    ("Urumqi", None, "Ürümqi", "Xinjiang"),
    ("延边朝鲜族自治州", None, "Yanbian", "Jilin"),
    ("延边", None, "Yanbian", "Jilin"),
    ("香港", None, "Hong Kong", "Hong Kong"),
    ("Hong Kong", None, "Hong Kong", "Hong Kong"),
    ("澳门", None, "Macau", "Macau"),
    ("台北", None, "Taipei", "Taiwan"),
    ("Kaohsiung", None, "Kaohsiung", "Taiwan"),
];

/// (lat, lon, expected city, expected province or region): points a few km from
/// each city centre, several of them close to a provincial or SAR border.
const POINTS: &[(f64, f64, &str, &str)] = &[
    (45.80, 126.55, "Harbin", "Heilongjiang"),
    (23.13, 113.30, "Guangzhou", "Guangdong"),
    (39.93, 116.40, "Beijing", "Beijing"),
    (31.23, 121.47, "Shanghai", "Shanghai"),
    (39.10, 117.20, "Tianjin", "Tianjin"),
    (29.57, 106.58, "Chongqing", "Chongqing"),
    (38.04, 114.51, "Shijiazhuang", "Hebei"),
    (37.87, 112.55, "Taiyuan", "Shanxi"),
    (40.84, 111.75, "Hohhot", "Inner Mongolia"),
    (41.80, 123.43, "Shenyang", "Liaoning"),
    (43.88, 125.32, "Changchun", "Jilin"),
    (32.06, 118.80, "Nanjing", "Jiangsu"),
    (30.27, 120.15, "Hangzhou", "Zhejiang"),
    (31.82, 117.23, "Hefei", "Anhui"),
    (26.07, 119.30, "Fuzhou", "Fujian"),
    (28.68, 115.89, "Nanchang", "Jiangxi"),
    (36.67, 117.00, "Jinan", "Shandong"),
    (34.75, 113.63, "Zhengzhou", "Henan"),
    (30.59, 114.30, "Wuhan", "Hubei"),
    (28.20, 112.97, "Changsha", "Hunan"),
    (22.82, 108.32, "Nanning", "Guangxi"),
    (20.04, 110.34, "Haikou", "Hainan"),
    (30.66, 104.07, "Chengdu", "Sichuan"),
    (26.65, 106.63, "Guiyang", "Guizhou"),
    (25.04, 102.71, "Kunming", "Yunnan"),
    (29.65, 91.13, "Lhasa", "Tibet"),
    (34.27, 108.94, "Xi'an", "Shaanxi"),
    (36.06, 103.83, "Lanzhou", "Gansu"),
    (36.62, 101.78, "Xining", "Qinghai"),
    (38.49, 106.23, "Yinchuan", "Ningxia"),
    (43.83, 87.62, "Ürümqi", "Xinjiang"),
    // Near borders.
    (22.54, 114.05, "Shenzhen", "Guangdong"),
    // Hong Kong has several districts of 100k+ people in the gazetteer: any of them is right.
    (22.30, 114.17, "*", "Hong Kong"),
    (22.20, 113.55, "Macau", "Macau"),
    (22.27, 113.58, "Zhuhai", "Guangdong"),
    (25.04, 121.56, "Taipei", "Taiwan"),
    (22.63, 120.30, "Kaohsiung", "Taiwan"),
    (40.00, 119.75, "Qinhuangdao", "Hebei"),
    (40.72, 120.85, "Huludao", "Liaoning"),
    (34.27, 117.18, "Xuzhou", "Jiangsu"),
    (33.95, 116.80, "Huaibei", "Anhui"),
    (36.58, 114.50, "Handan", "Hebei"),
    (36.08, 114.38, "Anyang", "Henan"),
    (31.30, 120.60, "Suzhou", "Jiangsu"),
    (33.64, 116.98, "Suzhou", "Anhui"),
    (31.75, 119.95, "Changzhou", "Jiangsu"),
    (30.75, 120.76, "Jiaxing", "Zhejiang"),
    (24.49, 118.10, "Xiamen", "Fujian"),
    (23.37, 116.68, "Shantou", "Guangdong"),
    (45.55, 126.98, "Harbin", "Heilongjiang"),
];

fn province_of(geo: &Geo, id: almanac::geo::CityId) -> String {
    let city = geo.city(id);
    if city.province.is_empty() { city.country.clone() } else { city.province.clone() }
}

#[test]
fn phones_resolve_to_their_prefecture() {
    let geo = Geo::bundled();
    let mut failures = Vec::new();
    for &(number, city, province) in PHONES {
        match geo.resolve(&LocationHints { phone: Some(number), ..Default::default() }) {
            Ok(place) => {
                let got = geo.city(place.city);
                if got.name != city
                    || province_of(geo, place.city) != province
                    || place.source != PlaceSource::Phone
                {
                    failures.push(format!(
                        "{number}: expected {city}, {province}; got {}, {}",
                        got.name, got.province
                    ));
                }
                assert_eq!(place.tz, chrono_tz::Asia::Shanghai, "{number}");
                assert!(place.confidence > 0.0 && place.confidence < 1.0, "{number}");
            }
            Err(error) => failures.push(format!("{number}: {error}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} failed:\n{}",
        failures.len(),
        PHONES.len(),
        failures.join("\n")
    );
}

#[test]
fn names_resolve_with_province_disambiguation() {
    let geo = Geo::bundled();
    let mut failures = Vec::new();
    for &(name, province, city, expected_province) in NAMES {
        match geo.find_city(name, province) {
            Ok(id) => {
                if geo.city(id).name != city || province_of(geo, id) != expected_province {
                    failures.push(format!(
                        "{name} ({province:?}): got {}, {}",
                        geo.city(id).name,
                        province_of(geo, id)
                    ));
                }
            }
            Err(error) => failures.push(format!("{name} ({province:?}): {error}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn coordinates_resolve_to_the_nearest_city() {
    let geo = Geo::bundled();
    let mut failures = Vec::new();
    for &(lat, lon, city, province) in POINTS {
        match geo.resolve(&LocationHints { coordinates: Some((lat, lon)), ..Default::default() }) {
            Ok(place) => {
                let got = geo.city(place.city);
                if (city != "*" && got.name != city) || province_of(geo, place.city) != province {
                    failures.push(format!(
                        "({lat}, {lon}): expected {city}, {province}; got {}, {}",
                        got.name,
                        province_of(geo, place.city)
                    ));
                }
                assert!(
                    place.distance_km.is_some_and(|d| d < 60.0),
                    "({lat}, {lon}): {:?}",
                    place.distance_km
                );
            }
            Err(error) => failures.push(format!("({lat}, {lon}): {error}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_provincial_division_is_covered() {
    let geo = Geo::bundled();
    let mut seen = std::collections::BTreeSet::new();
    for &(_, _, province) in PHONES {
        seen.insert(province);
    }
    for &(_, _, _, province) in NAMES {
        seen.insert(province);
    }
    for &(_, _, _, province) in POINTS {
        seen.insert(province);
    }
    assert_eq!(seen.len(), 34, "{seen:?}");
    assert!(PHONES.len() + NAMES.len() + POINTS.len() >= 200);
    // Every named province is one the gazetteer knows.
    for province in &seen {
        assert!(geo.is_province(province), "{province}");
    }
}

#[test]
fn suzhou_without_province_is_reported_ambiguous() {
    let geo = Geo::bundled();
    match geo.lookup_city("Suzhou", None) {
        Err(CityLookupError::Ambiguous { candidates, ids, .. }) => {
            assert_eq!(ids.len(), 2);
            let joined = candidates.join(" | ");
            assert!(joined.contains("苏州市") && joined.contains("宿州市"), "{joined}");
        }
        other => panic!("expected ambiguity, got {other:?}"),
    }
    for name in ["Taizhou", "Fuzhou", "Yichun", "Yulin"] {
        assert!(
            matches!(geo.lookup_city(name, None), Err(CityLookupError::Ambiguous { .. })),
            "{name}"
        );
    }
    let error = geo.find_city("Suzhou", Some("Guangdong")).unwrap_err().to_string();
    assert!(error.contains("no city") && error.contains("Anhui"), "{error}");
    let error = geo.find_city("Harbinn", None).unwrap_err().to_string();
    assert!(error.contains("did you mean") && error.contains("Harbin"), "{error}");
}

#[test]
fn bad_input_gets_a_reason_not_a_panic() {
    let geo = Geo::bundled();
    let cases: &[(LocationHints<'_>, &str)] = &[
        (LocationHints { phone: Some(""), ..Default::default() }, "empty"),
        (LocationHints { phone: Some("abc"), ..Default::default() }, "unexpected character"),
        (LocationHints { phone: Some("1390451"), ..Default::default() }, "11 digits"),
        (LocationHints { phone: Some("+86 139 0451 12345"), ..Default::default() }, "11 digits"),
        (LocationHints { phone: Some("+999 1234 5678"), ..Default::default() }, "calling code"),
        (LocationHints { phone: Some("0451"), ..Default::default() }, "9 to 12 digits"),
        (LocationHints { phone: Some("12345678901"), ..Default::default() }, "neither"),
        (
            LocationHints { phone: Some("13904511234😀"), ..Default::default() },
            "unexpected character",
        ),
        (
            LocationHints {
                phone: Some("1111111111111111111111111111111111111111"),
                ..Default::default()
            },
            "too long",
        ),
        (LocationHints { coordinates: Some((91.0, 0.0)), ..Default::default() }, "not coordinates"),
        (
            LocationHints { coordinates: Some((f64::NAN, 0.0)), ..Default::default() },
            "not coordinates",
        ),
        (LocationHints { coordinates: Some((-60.0, -140.0)), ..Default::default() }, "km away"),
        (LocationHints { city: Some("Atlantis"), ..Default::default() }, "unknown city"),
        (LocationHints { city: Some(""), ..Default::default() }, "unknown city"),
        (
            LocationHints { ip: Some("203.0.113.7"), ..Default::default() },
            "no IP geolocation data bundled",
        ),
        (LocationHints { ip: Some("not-an-ip"), ..Default::default() }, "not an IP address"),
    ];
    for (hints, needle) in cases {
        match geo.resolve(hints) {
            Err(ResolveError::Unresolved(reasons)) => {
                assert!(reasons.join(";").contains(needle), "{hints:?}: {reasons:?}")
            }
            other => panic!("{hints:?}: expected a reason containing {needle:?}, got {other:?}"),
        }
    }
    assert_eq!(geo.resolve(&LocationHints::default()), Err(ResolveError::NoHints));
}

#[test]
fn foreign_numbers_resolve_to_their_country_with_low_confidence() {
    let geo = Geo::bundled();
    for (number, country) in [
        ("+852 2345 6789", "HK"),
        ("+44 20 7946 0958", "GB"),
        ("+1 212 555 0100", "US"),
        ("0081 3 1234 5678", "JP"),
        ("+886 2 2345 6789", "TW"),
    ] {
        let place =
            geo.resolve(&LocationHints { phone: Some(number), ..Default::default() }).unwrap();
        assert_eq!(geo.city(place.city).country, country, "{number}");
        assert!(place.confidence <= 0.5, "{number}");
    }
    let hk = geo
        .resolve(&LocationHints { phone: Some("+852 2345 6789"), ..Default::default() })
        .unwrap();
    assert_eq!(geo.city(hk.city).lang_tag, "yue-Hant");
}

#[test]
fn precedence_explicit_then_coordinates_then_phone_and_configurable() {
    let geo = Geo::bundled();
    let hints = LocationHints {
        city: Some("广州"),
        coordinates: Some((45.8, 126.55)),
        phone: Some("0451-8212 3456"),
        ip: Some("10.0.0.1"),
        ..Default::default()
    };
    let place = geo.resolve(&hints).unwrap();
    assert_eq!(
        (geo.city(place.city).name.as_str(), place.source),
        ("Guangzhou", PlaceSource::Explicit)
    );
    let place = geo.resolve(&LocationHints { city: Some("Atlantis"), ..hints.clone() }).unwrap();
    assert_eq!(
        (geo.city(place.city).name.as_str(), place.source),
        ("Harbin", PlaceSource::Coordinates)
    );
    let place =
        geo.resolve(&LocationHints { city: None, coordinates: None, ..hints.clone() }).unwrap();
    assert_eq!(place.source, PlaceSource::Phone);
    let config: GeoConfig = toml::from_str("precedence = [\"phone\", \"explicit\"]").unwrap();
    let phone_first = Geo::with_config(config).unwrap();
    let place = phone_first.resolve(&hints).unwrap();
    assert_eq!(
        (phone_first.city(place.city).name.as_str(), place.source),
        ("Harbin", PlaceSource::Phone)
    );
}

#[test]
fn zones_default_to_beijing_time_and_are_overridable() {
    let geo = Geo::bundled();
    let urumqi = geo.find_city("乌鲁木齐", None).unwrap();
    assert_eq!(geo.zone(urumqi), chrono_tz::Asia::Shanghai);
    assert_eq!(geo.city_meta(urumqi).geonames_tz, "Asia/Urumqi");
    let config: GeoConfig =
        toml::from_str("[zones]\n\"新疆\" = \"Asia/Urumqi\"\nKashgar = \"Asia/Kashgar\"").unwrap();
    let custom = Geo::with_config(config).unwrap();
    assert_eq!(custom.zone(urumqi), chrono_tz::Asia::Urumqi);
    let kashgar = custom.find_city("Kashgar", None).unwrap();
    assert_eq!(custom.zone(kashgar), chrono_tz::Asia::Kashgar, "a city key beats its province");
    let place = custom
        .resolve(&LocationHints { phone: Some("0991-212 3456"), ..Default::default() })
        .unwrap();
    assert_eq!(place.tz, chrono_tz::Asia::Urumqi);
    let bad: GeoConfig = toml::from_str("[zones]\nXinjiang = \"Asia/Nowhere\"").unwrap();
    assert!(Geo::with_config(bad).unwrap_err().to_string().contains("Asia/Nowhere"));
    let bad: GeoConfig = toml::from_str("[zones]\nAtlantis = \"Asia/Shanghai\"").unwrap();
    assert!(Geo::with_config(bad).unwrap_err().to_string().contains("Atlantis"));
}

#[test]
fn gazetteer_has_every_prefecture_level_division() {
    let geo = Geo::bundled();
    let mainland: Vec<_> = geo.cities().filter(|(_, c)| c.country == "CN").collect();
    let municipalities =
        mainland.iter().filter(|(id, _)| geo.city_meta(*id).kind == "municipality").count();
    let prefectures =
        mainland.iter().filter(|(id, _)| geo.city_meta(*id).kind == "prefecture").count();
    assert_eq!((municipalities, prefectures), (4, 333));
    let provinces: std::collections::BTreeSet<_> =
        mainland.iter().map(|(_, c)| c.province.as_str()).collect();
    assert_eq!(provinces.len(), 31);
    for (_, city) in &mainland {
        assert_eq!(city.tz, chrono_tz::Asia::Shanghai, "{}", city.name);
        assert!(city.name_zh.is_some() && !city.dialect.is_empty(), "{}", city.name);
        assert!(city.lang_tag.ends_with("-Hans"), "{}: {}", city.name, city.lang_tag);
        // Sansha (Paracel Islands) lies at 16.8° N.
        assert!(
            (15.0..54.0).contains(&city.lat) && (73.0..136.0).contains(&city.lon),
            "{}",
            city.name
        );
    }
    let world = geo
        .cities()
        .filter(|(_, c)| !["CN", "HK", "MO", "TW"].contains(&c.country.as_str()))
        .count();
    assert!(world > 4000, "{world} world cities");
}

#[test]
fn dialects_of_key_cities() {
    let geo = Geo::bundled();
    for (name, tag) in [
        ("广州", "yue-Hans"),
        ("哈尔滨", "cmn-Hans"),
        ("上海", "wuu-Hans"),
        ("苏州", "wuu-Hans"),
        ("厦门", "nan-Hans"),
        ("福州", "cdo-Hans"),
        ("梅州", "hak-Hans"),
        ("长沙", "hsn-Hans"),
        ("南昌", "gan-Hans"),
        ("太原", "cjy-Hans"),
        ("黄山", "czh-Hans"),
        ("香港", "yue-Hant"),
        ("澳门", "yue-Hant"),
        ("台北", "cmn-Hant"),
        ("Paris", "fr"),
        ("Tokyo", "ja"),
        ("New York City", "en"),
    ] {
        let id = geo.find_city(name, None).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(geo.city(id).lang_tag, tag, "{name}");
    }
}

#[test]
fn harbin_and_guangzhou_cross_17_degrees_when_the_campaign_expects() {
    let geo = Geo::bundled();
    let harbin = geo.climate(geo.find_city("哈尔滨", None).unwrap()).unwrap().row;
    assert!(
        harbin.temp_c[7] > 17.0 && harbin.temp_c[8] < 17.0,
        "Harbin Aug/Sep {:?}",
        harbin.temp_c
    );
    let guangzhou = geo.climate(geo.find_city("广州", None).unwrap()).unwrap().row;
    assert!(
        guangzhou.temp_c[10] > 17.0 && guangzhou.temp_c[11] < 17.0,
        "Guangzhou Nov/Dec {:?}",
        guangzhou.temp_c
    );
    // The daily curve's first day below 17 °C after midsummer.
    let crossing = |name: &str| {
        let id = geo.find_city(name, None).unwrap();
        (182..=365).find(|&d| geo.normal(id, d, ClimateMetric::MeanTempC).unwrap() < 17.0).unwrap()
    };
    let harbin_day = crossing("哈尔滨");
    assert!(
        (244..=273).contains(&harbin_day),
        "Harbin crosses on day {harbin_day}, not in September"
    );
    let guangzhou_day = crossing("广州");
    assert!(
        (335..=365).contains(&guangzhou_day),
        "Guangzhou crosses on day {guangzhou_day}, not in December"
    );
}

#[test]
fn cities_without_a_row_borrow_the_nearest_within_300_km() {
    let geo = Geo::bundled();
    let foshan = geo.find_city("佛山", None).unwrap();
    let used = geo.climate(foshan).unwrap();
    assert!(used.distance_km > 0.0 && used.distance_km < 300.0);
    assert!(geo.normal(foshan, 200, ClimateMetric::MeanTempC).is_some());
    let far = geo.find_city("Ngari", None).unwrap();
    assert!(geo.climate(far).is_none() && geo.normal(far, 200, ClimateMetric::MeanTempC).is_none());
}

#[test]
fn climate_rows_cover_capitals_big_cities_and_50_world_cities() {
    let geo = Geo::bundled();
    let capitals = [
        "北京",
        "天津",
        "上海",
        "重庆",
        "石家庄",
        "太原",
        "呼和浩特",
        "沈阳",
        "长春",
        "哈尔滨",
        "南京",
        "杭州",
        "合肥",
        "福州",
        "南昌",
        "济南",
        "郑州",
        "武汉",
        "长沙",
        "广州",
        "南宁",
        "海口",
        "成都",
        "贵阳",
        "昆明",
        "拉萨",
        "西安",
        "兰州",
        "西宁",
        "银川",
        "乌鲁木齐",
        "香港",
        "澳门",
        "台北",
    ];
    for name in capitals {
        let id = geo.find_city(name, None).unwrap();
        let climate = geo.climate(id).unwrap_or_else(|| panic!("{name} has no climate row"));
        assert_eq!(climate.distance_km, 0.0, "{name} borrows {}", climate.row.name);
        assert!(climate.row.rh_pct.is_some(), "{name} has no humidity");
        assert!(!climate.row.source.is_empty(), "{name}");
    }
    // Every Chinese city of 1M+ people has a row of its own or one within 300 km.
    let mut borrowed = 0;
    for (id, city) in
        geo.cities().filter(|(_, c)| c.country == "CN" && c.population.unwrap_or(0) >= 1_000_000)
    {
        let climate =
            geo.climate(id).unwrap_or_else(|| panic!("{} has no row within 300 km", city.name));
        if climate.distance_km > 0.0 {
            borrowed += 1;
        }
    }
    assert!(borrowed < 146, "{borrowed}");
    let world = geo
        .climate_rows()
        .iter()
        .filter(|r| !["CN", "HK", "MO", "TW"].contains(&r.country.as_str()))
        .count();
    assert!(world >= 50, "{world} world rows");
}

#[test]
fn campaign_place_names_are_checked_with_did_you_mean() {
    use almanac::campaign::PlaceNames;
    let geo = Geo::bundled();
    assert!(
        geo.check_city("Harbin").is_ok()
            && geo.check_city("广州").is_ok()
            && geo.check_city("Paris").is_ok()
    );
    let error = geo.check_city("Shanghia").unwrap_err();
    assert!(error.contains("did you mean") && error.contains("Shanghai"), "{error}");
    // A name several cities share is an error naming each candidate and the way out.
    let error = geo.check_city("Suzhou").unwrap_err();
    assert!(
        error.contains("苏州市")
            && error.contains("宿州市")
            && error.contains("\"Suzhou, Jiangsu\"")
            && error.contains("\"苏州\""),
        "{error}"
    );
    assert!(geo.check_city("Suzhou, Jiangsu").is_ok() && geo.check_city("Suzhou，安徽").is_ok());
    assert!(geo.check_city("Suzhou, Guangdong").is_err());
    assert!(geo.check_city("Atlantis").is_err());
    assert!(
        geo.check_province("Guangdong").is_ok()
            && geo.check_province("广东").is_ok()
            && geo.check_province("黑龙江省").is_ok()
    );
    let error = geo.check_province("Guangdon").unwrap_err();
    assert!(error.contains("did you mean") && error.contains("Guangdong"), "{error}");
}

#[test]
fn data_version_changes_with_place_affecting_config() {
    let bundled = Geo::bundled();
    let same = Geo::with_config(GeoConfig::default()).unwrap();
    assert_eq!(bundled.data_version(), same.data_version());
    assert!(bundled.data_version().starts_with("geo-"));
    let config: GeoConfig = toml::from_str("[zones]\nXinjiang = \"Asia/Urumqi\"").unwrap();
    assert_ne!(Geo::with_config(config).unwrap().data_version(), bundled.data_version());
}

#[test]
fn world_cities_resolve_by_their_common_english_names() {
    let geo = Geo::bundled();
    for (name, city, country) in [
        ("New York", "New York City", "US"),
        ("new york", "New York City", "US"),
        ("Ho Chi Minh", "Ho Chi Minh City", "VN"),
        ("Salt Lake", "Salt Lake City", "US"),
        ("Mexico City", "Mexico City", "MX"),
        ("London", "London", "GB"),
    ] {
        let id = geo.find_city(name, None).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((geo.city(id).name.as_str(), geo.city(id).country.as_str()), (city, country));
    }
    // A qualified name picks one of several cities, in either script.
    let jiangsu = geo.find_city("Suzhou, Jiangsu", None).unwrap();
    assert_eq!(geo.city(jiangsu).name_zh.as_deref(), Some("苏州市"));
    let anhui = geo.find_city("宿州", None).unwrap();
    assert_eq!(geo.city(anhui).name_zh.as_deref(), Some("宿州市"));
}

/// The sourced reference table bundled as `data/src/climate-sourced.csv`:
/// (city, country) → its rows' monthly mean temperatures and humidity (empty when none).
fn sourced_table() -> Vec<(String, String, [f64; 12], Vec<f64>)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/data/src/climate-sourced.csv");
    let mut reader = csv::Reader::from_path(path).unwrap();
    let headers = reader.headers().unwrap().clone();
    let column = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (city, country, t01, rh01) =
        (column("city_en"), column("country"), column("t01"), column("rh01"));
    reader
        .records()
        .map(|record| {
            let record = record.unwrap();
            let temps = std::array::from_fn(|m| record[t01 + m].parse::<f64>().unwrap());
            let rh = (0..12).filter_map(|m| record[rh01 + m].parse::<f64>().ok()).collect();
            (record[city].to_string(), record[country].to_string(), temps, rh)
        })
        .collect()
}

/// `almanac resolve <city> --format json`'s `climate` object.
fn resolved_climate(city: &str) -> serde_json::Value {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_almanac"))
        .args(["resolve", city, "--format", "json"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    value["climate"].clone()
}

#[test]
fn resolve_shows_sourced_figures_and_their_quality() {
    let table = sourced_table();
    let reference = |city: &str| {
        table.iter().filter(|r| r.0 == city).max_by_key(|r| r.3.len()).unwrap().clone()
    };
    let temps = |climate: &serde_json::Value| -> Vec<f64> {
        climate["mean_temp_c"].as_array().unwrap().iter().map(|t| t.as_f64().unwrap()).collect()
    };
    // Temperatures from Wikipedia's list, humidity still typed.
    for (city, row) in [("哈尔滨", "Harbin"), ("Guangzhou", "Guangzhou")] {
        let climate = resolved_climate(city);
        assert_eq!(climate["quality"], "temp_sourced", "{city}: {climate}");
        assert_eq!(temps(&climate), reference(row).2.to_vec(), "{city}");
        assert!(
            climate["source"].as_str().unwrap().contains("List of cities by average temperature")
        );
        assert!(climate["source"].as_str().unwrap().contains("humidity (unsourced)"));
    }
    // Harbin's January and Guangzhou's December as the list prints them.
    assert_eq!(temps(&resolved_climate("Harbin"))[0], -17.6);
    assert_eq!(temps(&resolved_climate("广州"))[11], 15.5);
    // Temperature and humidity from one CMA / SMG table.
    for (city, row) in [("西安", "Xi'an"), ("Macau", "Macau")] {
        let climate = resolved_climate(city);
        let reference = reference(row);
        assert_eq!(climate["quality"], "sourced", "{city}: {climate}");
        assert_eq!(temps(&climate), reference.2.to_vec(), "{city}");
        let rh: Vec<f64> = climate["rel_humidity_pct"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h.as_f64().unwrap())
            .collect();
        assert_eq!(rh, reference.3, "{city}");
    }
    // No checkable source: said so.
    let tianjin = resolved_climate("天津");
    assert_eq!(tianjin["quality"], "unsourced", "{tianjin}");
    assert_eq!(tianjin["quality_meaning"], "no checkable source");
    // The text format says it too.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_almanac"))
        .args(["resolve", "Tianjin"])
        .output()
        .unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("\nquality:    unsourced (no checkable source)\n"), "{text}");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_almanac"))
        .args(["resolve", "+86 139 0451 1234"])
        .output()
        .unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("mean °C:    -17.6 -12.1 -2.7 7.7"), "{text}");
    assert!(text.contains("\nquality:    temp_sourced ("), "{text}");
}

#[test]
fn every_climate_row_is_sourced_as_it_claims_or_says_unsourced() {
    let table = sourced_table();
    let geo = Geo::bundled();
    let quality = |row: &almanac::geo::ClimateRow| {
        serde_json::to_value(row).unwrap()["quality"].as_str().unwrap().to_string()
    };
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for row in geo.climate_rows() {
        let quality = quality(row);
        *counts.entry(quality.clone()).or_default() += 1;
        let same_temps = table.iter().find(|r| r.1 == row.country && r.2 == row.temp_c);
        match quality.as_str() {
            "sourced" | "temp_sourced" => {
                let reference = same_temps.unwrap_or_else(|| {
                    panic!("{}: {quality}, but no sourced row has its temperatures", row.name)
                });
                let rh_sourced = row.rh_pct.is_some_and(|rh| rh.to_vec() == reference.3);
                if quality == "sourced" && !rh_sourced {
                    // Humidity checked against a table the sourced CSV does not carry.
                    assert!(row.source.contains("humidity: "), "{}: {}", row.name, row.source);
                }
                if quality == "temp_sourced" {
                    assert!(!rh_sourced && row.rh_pct.is_some(), "{}", row.name);
                }
            }
            "unsourced" => {
                // A city of the sourced table whose row is not used says why.
                let listed = table.iter().any(|r| r.0 == row.name && r.1 == row.country);
                assert!(
                    !listed || row.source.contains("was not used"),
                    "{} is in the sourced table: {}",
                    row.name,
                    row.source
                );
            }
            other => panic!("{}: quality {other:?}", row.name),
        }
    }
    let count = |q: &str| counts.get(q).copied().unwrap_or(0);
    assert_eq!(
        count("sourced") + count("temp_sourced") + count("unsourced"),
        geo.climate_rows().len()
    );
    // 69 of the 120 bundled cities have a usable sourced row (docs/place-data.md).
    assert_eq!(count("sourced") + count("temp_sourced"), 69, "{counts:?}");
}
